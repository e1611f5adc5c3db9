"""Black-box compliance audit (Art. 9, 11, 12, 15, 16, 22, 23, 26 of the 2021 draft Provisions):
drives a running server over HTTP only, as an inspector would, and checks each article with counts.

Three layers, read top to bottom: the recorded `Exchange`s and the `Inspector` that makes them
(bounded, timed out, to one base URL only); the checks, pure functions over recorded responses that
return a `CheckResult` each (testable with hand-made responses); and `run_audit`, which drives the
server through each trial, restores every setting it changed, and runs the checks.
"""

from __future__ import annotations

import html
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

FILING_HEADER = "x-algorithm-filing-number"
REQUEST_ID_HEADER = "x-request-id"
MAX_DETAILS = 10
REFUSAL_CODES = frozenset({"minors_curfew", "minors_daily_limit"})
ALL_SURFACES = ("home", "feed", "related", "trending")
DISCOVERY_IDS = tuple(str(n) for n in range(1, 51))  # MovieLens user ids
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@\-]+$")
PERSONALIZED, NON_PERSONALIZED = "personalized", "non_personalized"
MINOR_SAFE, AI_GENERATED = "minor_safe", "ai_generated"
DISPERSAL_RULE, FRONT_SCREEN_RULE = "dispersal", "front_screen"
# Reasons that speak of the item (its popularity, category, editors), not of the user's interests.
IMPERSONAL_REASONS = frozenset(
    {"popular", "popular_in_category", "trending", "editorial_front_screen", "pinned", "boosted", "minor_safe_pick"}
)
RECOMMENDATIONS_PATH = "/v1/recommendations"
CONTENT_DEDUP_NOTE = (
    "content duplicates (the same work under two item ids) cannot be seen black-box except through "
    "identical titles, which the API does not return; only item-id duplicates are checked"
)


class AuditError(RuntimeError):
    """The audit cannot run (bad flag, unreachable or unready server, request budget exhausted)."""


# ---------------------------------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditConfig:
    """How much to ask of the server; every trial is bounded by these numbers."""

    users: int = 4  # known (personalized) users to find and use
    pages: int = 3  # pages per session (0 .. pages-1), chained by session_id
    lists: int = 40  # lists requested by the Art. 12 crawl (on top of the other trials' lists)
    k: int = 10  # list length asked for
    seed: int = 7  # orders the discovered users and assigns them to trials
    user_ids: tuple[str, ...] = ()  # known users given explicitly (skips discovery)
    admin_token: str = "dev-admin-token"
    surfaces: tuple[str, ...] = ("home", "feed")  # crawl and tag-trial surfaces
    minor_surfaces: tuple[str, ...] = ALL_SURFACES
    timeout_s: float = 10.0
    operator: str = "compliance-audit"

    def __post_init__(self) -> None:
        for flag, value, low, high in (
            ("--users", self.users, 1, 50),
            ("--pages", self.pages, 1, 20),
            ("--lists", self.lists, 1, 1000),
            ("k", self.k, 1, 100),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise AuditError(f"{flag}: must be an integer in {low}..{high}, got {value!r}")
        bad = [u for u in self.user_ids if not USER_ID_PATTERN.match(u)]
        if bad:
            raise AuditError(f"--user-ids: {bad[0]!r} is not a user id (letters, digits and _.:@- only)")
        if not self.timeout_s > 0:
            raise AuditError(f"timeout_s: must be > 0, got {self.timeout_s!r}")

    @property
    def max_requests(self) -> int:
        """An upper bound on what the trials below send (each list is also fetched back once);
        the inspector refuses to go past it."""
        discovery = len(self.user_ids) or len(DISCOVERY_IDS)
        users = max(self.users, len(self.user_ids))
        tag_lists = 2 * len(self.surfaces) * self.pages
        minor_lists = len(self.minor_surfaces) * self.pages
        served = discovery + self.lists + 4 + tag_lists + minor_lists
        probe, switch, tags, minors, complaint, foreign, verify = 3, 14, users + tag_lists + 3, minor_lists + 5, 6, 3, 2
        return probe + discovery + self.lists + switch + tags + minors + complaint + served + foreign + verify


@dataclass(frozen=True)
class ExpectedPolicy:
    """The policy the server declares (read from GET /v1/transparency), or the contract defaults."""

    dispersal_window: int = 5
    dispersal_max: int = 2
    dispersal_across_pages: bool = True
    front_surfaces: tuple[str, ...] = ("home",)
    front_pages: tuple[int, ...] = (0,)
    front_positions: tuple[int, ...] = (1, 5)
    front_pool: str = "mainstream"
    source: str = "defaults"


@dataclass
class CheckResult:
    """One check of one article: passed or not, its counts, and up to ten example failures."""

    article: str
    name: str
    passed: bool
    counts: dict[str, Any]
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class AuditReport:
    base_url: str
    started_at: str
    finished_at: str
    server: dict[str, Any]
    policy: dict[str, Any]
    config: dict[str, Any]
    users: list[str]
    checks: list[CheckResult]
    totals: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    exchanges: list[dict[str, Any]] = field(default_factory=list)  # method, path, status, request id of each

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        out["config"].pop("admin_token", None)
        return out


def _result(article: str, name: str, failures: list[str], counts: dict[str, Any],
            notes: Iterable[str] = (), ran: bool = True) -> CheckResult:
    """A CheckResult that fails on any failure, or when the check could not run at all."""
    counts = {"failures": len(failures), **counts}
    return CheckResult(article, name, ran and not failures, counts, failures[:MAX_DETAILS], list(notes))


# ---------------------------------------------------------------------------------------------------
# Recorded exchanges and the inspector that makes them
# ---------------------------------------------------------------------------------------------------
@dataclass
class Exchange:
    """One request and what came back; `status` 0 means no response arrived (see `error`)."""

    method: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: Any = None  # parsed JSON, else the text
    sent: Any = None  # the JSON body sent, if any
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def data(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    def summary(self) -> str:
        tail = f" ({self.error})" if self.error else ""
        detail = self.data.get("detail") if not self.ok else None
        return f"{self.method} {self.path} -> {self.status}{tail}" + (f": {str(detail)[:120]}" if detail else "")


def _said(exchange: Exchange | None, missing: str = "not attempted") -> str:
    """What an exchange came to, for a failure message; `missing` when it never happened."""
    return exchange.summary() if exchange is not None else missing


def check_base_url(url: str) -> str:
    """`url` without a trailing slash if it is an http(s) base URL, else AuditError naming --url."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AuditError(f"--url: expected http://HOST:PORT (e.g. http://127.0.0.1:8000), got {url!r}")
    if parts.query or parts.fragment:
        raise AuditError(f"--url: give the server's base URL without query or fragment, got {url!r}")
    return url.strip().rstrip("/")


class Inspector:
    """Talks to one server only (relative paths on its base URL), records every exchange, and
    refuses to send more than `max_requests`."""

    def __init__(self, base_url: str, config: AuditConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.max_requests = config.max_requests
        self._own_client = client is None
        self.client = client or httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(config.timeout_s, connect=min(5.0, config.timeout_s)),
            follow_redirects=False,
            headers={"User-Agent": "recsys-compliance-audit"},
        )
        self.exchanges: list[Exchange] = []

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                admin: bool = False) -> Exchange:
        if len(self.exchanges) >= self.max_requests:
            raise AuditError(f"request budget of {self.max_requests} exhausted at {method} {path}; "
                             "the audit is bounded")
        headers = {}
        if admin:
            headers = {"Authorization": f"Bearer {self.config.admin_token}", "X-Operator": self.config.operator}
        try:
            response = self.client.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            exchange = Exchange(method, path, 0, sent=json, error=f"{type(exc).__name__}: {exc}")
        else:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            kept = {name: response.headers[name] for name in (FILING_HEADER, REQUEST_ID_HEADER, "content-type")
                    if name in response.headers}
            exchange = Exchange(method, path, response.status_code, kept, body, sent=json)
        self.exchanges.append(exchange)
        return exchange

    def recommend(self, user_id: str, surface: str, page: int = 0, session_id: str | None = None) -> Exchange:
        body: dict[str, Any] = {"user_id": user_id, "surface": surface, "page": page, "k": self.config.k}
        if session_id is not None:
            body["session_id"] = session_id
        return self.request("POST", RECOMMENDATIONS_PATH, json=body)

    def settings(self, user_id: str) -> Exchange:
        return self.request("GET", f"/v1/users/{quote(user_id, safe='')}/settings")

    def put_settings(self, user_id: str, **values: Any) -> Exchange:
        return self.request("PUT", f"/v1/users/{quote(user_id, safe='')}/settings", json=values)


# ---------------------------------------------------------------------------------------------------
# Reading recorded responses
# ---------------------------------------------------------------------------------------------------
@dataclass
class Session:
    """The pages of one session as served, in the order requested (page 0 first)."""

    session_id: str | None
    user_id: str
    surface: str
    pages: list[dict[str, Any]] = field(default_factory=list)


def served_lists(exchanges: Iterable[Exchange]) -> list[dict[str, Any]]:
    """Bodies of every list served (200 from POST /v1/recommendations), in order."""
    return [e.data for e in exchanges if e.method == "POST" and e.path == RECOMMENDATIONS_PATH and e.ok and e.data]


def sessions_from(exchanges: Iterable[Exchange]) -> list[Session]:
    """Group served lists by the session id the audit sent (or, for page 0, the one returned)."""
    sessions: dict[str, Session] = {}
    for exchange in exchanges:
        if exchange.method != "POST" or exchange.path != RECOMMENDATIONS_PATH or not exchange.ok or not exchange.data:
            continue
        body = exchange.data
        sent = exchange.sent if isinstance(exchange.sent, dict) else {}
        key = sent.get("session_id") or body.get("session_id") or f"unkeyed-{len(sessions)}"
        session = sessions.setdefault(key, Session(key, str(body.get("user_id", sent.get("user_id"))),
                                                   str(body.get("surface", sent.get("surface")))))
        session.pages.append(body)
    return list(sessions.values())


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("items") if isinstance(body, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _ids(body: dict[str, Any]) -> list[str]:
    return [str(item.get("item_id")) for item in _items(body)]


def _violations(body: dict[str, Any]) -> list[dict[str, Any]]:
    violations = body.get("violations") if isinstance(body, dict) else None
    return [v for v in violations if isinstance(v, dict)] if isinstance(violations, list) else []


def _where(body: dict[str, Any]) -> str:
    return (f"user {body.get('user_id')} {body.get('surface')} page {body.get('page')} "
            f"(request {body.get('request_id')})")


def _unreported(body: dict[str, Any], rules: set[str], positions0: Sequence[int]) -> list[int]:
    """The 0-based positions among `positions0` for which the response reports no violation of
    `rules`. The API does not fix whether violation positions count from 0 (as the policy engine
    does) or 1 (as item positions do): each response is read in whichever explains more."""
    reported = {v.get("position") for v in _violations(body) if v.get("rule") in rules}
    from_zero = [p for p in positions0 if p not in reported]
    from_one = [p for p in positions0 if p + 1 not in reported]
    return from_zero if len(from_zero) <= len(from_one) else from_one


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for inner in value.values():
            yield from _walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def expected_policy(transparency: Any) -> ExpectedPolicy:
    """The dispersal and front-screen policy the transparency document declares: structured fields
    (`dispersal`, `front_screen`) if present, else the plain-language policy texts, else defaults."""
    found: dict[str, Any] = {}
    sources: set[str] = set()
    for node in _walk(transparency):
        if isinstance(node, dict):
            d, f = node.get("dispersal"), node.get("front_screen")
            if isinstance(d, dict) and isinstance(d.get("window"), int) and isinstance(d.get("max_per_window"), int):
                found.update(dispersal_window=d["window"], dispersal_max=d["max_per_window"],
                             dispersal_across_pages=bool(d.get("across_pages", True)))
                sources.add("transparency fields")
            if isinstance(f, dict) and isinstance(f.get("positions"), list):
                found.update(front_positions=tuple(int(p) for p in f["positions"]),
                             front_surfaces=tuple(f.get("surfaces") or ("home",)),
                             front_pages=tuple(int(p) for p in f.get("pages") or (0,)),
                             front_pool=str(f.get("pool") or "mainstream"))
                sources.add("transparency fields")
        elif isinstance(node, str):
            dispersal = re.search(r"In any (\d+) consecutive positions, at most (\d+) items share", node)
            if dispersal and "dispersal_window" not in found:
                found.update(dispersal_window=int(dispersal.group(1)), dispersal_max=int(dispersal.group(2)),
                             dispersal_across_pages="within each page" not in node)
                sources.add("transparency text")
            # pages in the API's numbering: "on the front screen (page 0)" or "on pages 0 and 1 (...)"
            front = re.search(r"On the (.+?) surfaces?, on (?:the front screen \(page (0)\)|pages ([\d, and]+?) \(page 0 "
                              r"is the front screen\)), positions? ([\d, and]+?) show items from the editorial '([^']+)' pool",
                              node)
            if front and "front_positions" not in found:
                found.update(front_surfaces=tuple(s.strip() for s in re.split(r",| and ", front.group(1)) if s.strip()),
                             front_pages=_numbers(front.group(2) or front.group(3)),
                             front_positions=_numbers(front.group(4)), front_pool=front.group(5))
                sources.add("transparency text")
            elif "No front-screen slots are configured" in node and "front_positions" not in found:
                found.update(front_positions=())
                sources.add("transparency text")
    return ExpectedPolicy(**found, source=" + ".join(sorted(sources)) or "defaults")


# ---------------------------------------------------------------------------------------------------
# Checks: pure functions over recorded responses
# ---------------------------------------------------------------------------------------------------
def check_dedup(sessions: Sequence[Session]) -> CheckResult:
    """Art. 12: no item id twice in a list, nor again on a later page of the same session."""
    failures: list[str] = []
    within = across = mismatched = items = lists = 0
    for session in sessions:
        first_seen: dict[str, int] = {}
        for page_no, body in enumerate(session.pages):
            lists += 1
            if session.session_id and body.get("session_id") not in (None, session.session_id):
                mismatched += 1
                failures.append(f"{_where(body)}: session_id {body.get('session_id')!r}, "
                                f"the audit sent {session.session_id!r}")
            on_page: set[str] = set()
            for item_id in _ids(body):
                items += 1
                if item_id in on_page:
                    within += 1
                    failures.append(f"{_where(body)}: item {item_id} twice in the list")
                elif item_id in first_seen:
                    across += 1
                    failures.append(f"{_where(body)}: item {item_id} already shown on page "
                                    f"{first_seen[item_id]} of this session")
                on_page.add(item_id)
                first_seen.setdefault(item_id, page_no)
    counts = {"sessions": len(sessions), "lists": lists, "items": items, "duplicates_within_list": within,
              "duplicates_across_pages": across, "session_id_mismatches": mismatched}
    if not lists:
        failures.append("no lists were served, nothing to check")
    return _result("Art. 12", "de-duplication", failures, counts, [CONTENT_DEDUP_NOTE])


def dispersal_violations(categories: Sequence[Any], window: int, max_per_window: int) -> list[int]:
    """Indices where an item's category occurs more than `max_per_window` times in the `window`
    positions ending there (the same reading the server's policy engine uses)."""
    out = []
    for end, value in enumerate(categories):
        if value is None:
            continue
        if list(categories[max(0, end - window + 1): end + 1]).count(value) > max_per_window:
            out.append(end)
    return out


def check_dispersal(sessions: Sequence[Session], window: int = 5, max_per_window: int = 2,
                    across_pages: bool = True) -> CheckResult:
    """Art. 12: at most `max_per_window` items of one category in any `window` consecutive positions,
    across the pages of a session. A violation the server reported with the list is counted (the
    candidates may not have allowed better); one it did not report is a failure."""
    failures: list[str] = []
    observed = reported = missing_category = server_reported = lists = 0
    for session in sessions:
        runs: list[list[tuple[dict, int, Any]]] = [[]]
        for body in session.pages:
            lists += 1
            server_reported += sum(1 for v in _violations(body) if v.get("rule") == DISPERSAL_RULE)
            if not across_pages:
                runs.append([])
            for position0, item in enumerate(_items(body)):
                category = item.get("category")
                if category in (None, ""):
                    missing_category += 1
                    failures.append(f"{_where(body)}: item {item.get('item_id')} has no category")
                    category = None
                runs[-1].append((body, position0, category))
        found: dict[int, tuple[dict, list[tuple[int, Any]]]] = {}  # per response: (body, [(position0, category)])
        for run in runs:
            for index in dispersal_violations([c for _, _, c in run], window, max_per_window):
                body, position0, category = run[index]
                found.setdefault(id(body), (body, []))[1].append((position0, category))
        for body, violations in found.values():
            observed += len(violations)
            missed = set(_unreported(body, {DISPERSAL_RULE}, [p for p, _ in violations]))
            reported += len(violations) - len(missed)
            for position0, category in violations:
                if position0 in missed:
                    failures.append(f"{_where(body)}: position {position0 + 1}: more than {max_per_window} items "
                                    f"of category {category!r} in the {window} positions ending here, "
                                    "not reported by the server")
    counts = {"sessions": len(sessions), "lists": lists, "violations_observed": observed,
              "violations_reported_by_server": reported, "violations_unreported": observed - reported,
              "server_reported_total": server_reported, "items_without_category": missing_category}
    if not lists:
        failures.append("no lists were served, nothing to check")
    notes = [f"window {window}, at most {max_per_window} per category, "
             + ("counted across page boundaries" if across_pages else "within each page")]
    return _result("Art. 12", "dispersal", failures, counts, notes)


def check_explanations(lists: Sequence[dict[str, Any]]) -> CheckResult:
    """Art. 12: every item carries a reason with a non-empty code and text."""
    failures: list[str] = []
    items = missing = 0
    codes: Counter[str] = Counter()
    for body in lists:
        for item in _items(body):
            items += 1
            reason = item.get("reason")
            code = reason.get("code") if isinstance(reason, dict) else None
            text = reason.get("text") if isinstance(reason, dict) else None
            if not (isinstance(code, str) and code.strip() and isinstance(text, str) and text.strip()):
                missing += 1
                failures.append(f"{_where(body)}: item {item.get('item_id')} has reason {reason!r}")
            else:
                codes[code] += 1
    if not items:
        failures.append("no items were served, nothing to check")
    notes = ["reason codes seen: " + ", ".join(f"{c} {n}" for c, n in codes.most_common())] if codes else []
    return _result("Art. 12", "explanations", failures, {"lists": len(lists), "items": items,
                                                         "items_without_reason": missing}, notes)


def check_front_screen(lists: Sequence[dict[str, Any]], policy: ExpectedPolicy = ExpectedPolicy()) -> CheckResult:
    """Art. 11: on the front screen (surface/page per policy), the configured positions carry items
    from the mainstream pool (`slot` "mainstream"); a slot the server reported it could not fill is
    counted, an unreported one fails."""
    failures: list[str] = []
    screens = expected = filled = excused = position_mismatch = beyond = 0
    for body in lists:
        if body.get("surface") not in policy.front_surfaces or body.get("page") not in policy.front_pages:
            continue
        screens += 1
        items = _items(body)
        for index, item in enumerate(items):
            if item.get("position") not in (None, index + 1):
                position_mismatch += 1
                failures.append(f"{_where(body)}: item {index + 1} says position {item.get('position')}")
        unfilled = []
        for position in policy.front_positions:
            if position > len(items):
                beyond += 1  # a short page: the slate-size rule, not this one
                continue
            expected += 1
            if items[position - 1].get("slot") == policy.front_pool:
                filled += 1
            else:
                unfilled.append(position - 1)
        missed = _unreported(body, {FRONT_SCREEN_RULE}, unfilled)
        excused += len(unfilled) - len(missed)
        for position0 in missed:
            failures.append(f"{_where(body)}: position {position0 + 1} has slot {items[position0].get('slot')!r}, "
                            f"expected {policy.front_pool!r}, and no front_screen violation was reported")
    counts = {"front_screens": screens, "expected_slots": expected, "mainstream_filled": filled,
              "fill_rate": round(filled / expected, 3) if expected else 0.0, "reported_unfilled": excused,
              "position_field_mismatches": position_mismatch, "slots_beyond_short_pages": beyond}
    if policy.front_positions and not screens:
        failures.append("no front screen was served, nothing to check")
    notes = [f"positions {list(policy.front_positions)} of {list(policy.front_surfaces)} page(s) "
             f"{list(policy.front_pages)} from the {policy.front_pool!r} pool ({policy.source})"]
    return _result("Art. 11", "front screen", failures, counts, notes)


@dataclass
class SwitchTrial:
    """What the Art. 15 switch trial saw, per user."""

    users: list[str] = field(default_factory=list)
    had_personalized: set[str] = field(default_factory=set)
    original: dict[str, Exchange] = field(default_factory=dict)  # GET settings before
    off: dict[str, Exchange] = field(default_factory=dict)  # PUT personalization=false
    off_list: dict[str, Exchange] = field(default_factory=dict)  # the very next request
    on: dict[str, Exchange] = field(default_factory=dict)  # PUT personalization=true
    on_list: dict[str, Exchange] = field(default_factory=dict)
    restored: dict[str, Exchange] = field(default_factory=dict)  # GET settings after restoring


def _same_settings(before: Exchange | None, after: Exchange | None) -> bool:
    keys = ("personalization", "minor_mode")
    return bool(before and after and before.ok and after.ok
                and all(before.data.get(k) == after.data.get(k) for k in keys))


def check_personalization_switch(trial: SwitchTrial) -> CheckResult:
    """Art. 15: switching personalization off holds from the very next request (mode
    non_personalized), gives users in the same situation identical lists, and switching it back
    on restores personalized lists."""
    failures: list[str] = []
    off_ok = on_ok = restored = 0
    off_lists: dict[str, list[str]] = {}
    if len(trial.users) < 2:
        failures.append(f"needs two known users, had {len(trial.users)}")
    for user in trial.users:
        put = trial.off.get(user)
        if put is None or not put.ok or put.data.get("personalization") is not False:
            failures.append(f"user {user}: switching off: {_said(put)}")
            continue
        listed = trial.off_list.get(user)
        if listed is None or not listed.ok:
            failures.append(f"user {user}: next list after switching off: {_said(listed, 'not requested')}")
        elif listed.data.get("mode") != NON_PERSONALIZED:
            failures.append(f"user {user}: next list after switching off has mode {listed.data.get('mode')!r}")
        else:
            off_ok += 1
            off_lists[user] = _ids(listed.data)
        if user in trial.had_personalized:
            back = trial.on_list.get(user)
            if back is None or not back.ok or back.data.get("mode") != PERSONALIZED:
                got = back.data.get("mode") if back is not None and back.ok else _said(back, "not requested")
                failures.append(f"user {user}: after switching back on, list mode {got!r}, expected 'personalized'")
            else:
                on_ok += 1
        if _same_settings(trial.original.get(user), trial.restored.get(user)):
            restored += 1
        else:
            before, after = trial.original.get(user), trial.restored.get(user)
            failures.append(f"user {user}: settings not restored: before {before.data if before else None}, "
                            f"after {after.data if after else None}")
    distinct = {tuple(ids) for ids in off_lists.values()}
    if len(distinct) > 1:
        shown = "; ".join(f"user {u}: {ids[:5]}" for u, ids in off_lists.items())
        failures.append(f"non-personalized lists differ between users in the same situation: {shown}")
    counts = {"users": len(trial.users), "non_personalized_next_request": off_ok,
              "identical_non_personalized_lists": len(off_lists) if len(distinct) == 1 else 0,
              "personalized_after_switch_on": on_ok, "settings_restored": restored}
    return _result("Art. 15", "personalization switch", failures, counts)


@dataclass
class TagTrial:
    """What the Art. 15 tag trial saw for one user."""

    user_id: str | None = None
    tag: str | None = None
    users_tried: int = 0
    before: list[dict[str, Any]] = field(default_factory=list)  # lists before the deletion
    delete: Exchange | None = None
    after: list[dict[str, Any]] = field(default_factory=list)  # lists after the deletion
    tags_after: Exchange | None = None
    restore: Exchange | None = None
    list_errors: list[Exchange] = field(default_factory=list)


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, flags=re.IGNORECASE) is not None


def tag_citations(lists: Sequence[dict[str, Any]], tag: str) -> tuple[list[str], int]:
    """Items whose reason cites `tag` as the user's interest, and the count of impersonal mentions
    (e.g. 'Popular in Comedy', which speaks of the item's category, not of the user's tag)."""
    cited, impersonal = [], 0
    for body in lists:
        for item in _items(body):
            reason = item.get("reason") if isinstance(item.get("reason"), dict) else {}
            text = str(reason.get("text") or "")
            if not _mentions(text, tag):
                continue
            if reason.get("code") in IMPERSONAL_REASONS:
                impersonal += 1
            else:
                cited.append(f"{_where(body)}: item {item.get('item_id')} reason {reason.get('code')!r}: {text!r}")
    return cited, impersonal


def check_tag_deletion(trial: TagTrial) -> CheckResult:
    """Art. 15: a deleted tag is no longer cited by any explanation, shows as deleted, and the
    audit puts it back."""
    failures: list[str] = []
    if trial.tag is None or trial.user_id is None:
        failures.append(f"no known user with interest tags found ({trial.users_tried} tried)")
        return _result("Art. 15", "tag deletion", failures, {"users_tried": trial.users_tried}, ran=False)
    tag, user = trial.tag, trial.user_id
    if trial.delete is None or not trial.delete.ok:
        failures.append(f"user {user}: deleting tag {tag!r}: {_said(trial.delete)}")
    cited_before, _ = tag_citations(trial.before, tag)
    cited_after, impersonal = tag_citations(trial.after, tag)
    failures += [f"after deletion: {c}" for c in cited_after]
    failures += [f"list request failed: {e.summary()}" for e in trial.list_errors]
    if not trial.after:
        failures.append("no list was served after the deletion, nothing to check")
    view = trial.tags_after.data if trial.tags_after is not None and trial.tags_after.ok else None
    if view is None:
        failures.append(f"user {user}: tags after deletion: {_said(trial.tags_after, 'not requested')}")
    else:
        names = {t.get("name") for t in view.get("tags") or [] if isinstance(t, dict)}
        if tag in names or tag not in (view.get("deleted") or []):
            failures.append(f"user {user}: tags view after deletion lists {tag!r} in tags={tag in names}, "
                            f"deleted={tag in (view.get('deleted') or [])}")
    restored = trial.restore is not None and trial.restore.ok and tag in {
        t.get("name") for t in trial.restore.data.get("tags") or [] if isinstance(t, dict)}
    if not restored:
        failures.append(f"user {user}: restoring tag {tag!r}: {_said(trial.restore)}")
    counts = {"lists_before": len(trial.before), "citations_before": len(cited_before), "lists_after": len(trial.after),
              "items_after": sum(len(_items(b)) for b in trial.after), "citations_after": len(cited_after),
              "impersonal_category_mentions_after": impersonal, "restored": int(restored)}
    notes = [f"user {user}, tag {tag!r}; restored with POST action=add (the API has no undo of a delete, "
             "so the tag's source may now read 'user')"]
    if not cited_before:
        notes.append("no explanation cited the tag before deletion either; the check had little to catch")
    return _result("Art. 15", "tag deletion", failures, counts, notes)


@dataclass
class Replay:
    """A served list and what GET /v1/recommendations/{request_id}?user_id= returned for it."""

    served: dict[str, Any]
    replay: Exchange


def _reasons(body: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [((item.get("reason") or {}).get("code"), (item.get("reason") or {}).get("text"))
            if isinstance(item.get("reason"), dict) else (None, None) for item in _items(body)]


def check_explanation_on_request(replays: Sequence[Replay], foreign: Sequence[Exchange]) -> CheckResult:
    """Art. 15: a served list can be fetched again by its user, with the same items in the same order
    and the same reasons; another user gets 404."""
    failures: list[str] = []
    same = 0
    for r in replays:
        if not r.replay.ok:
            failures.append(f"{_where(r.served)}: {r.replay.summary()}")
        elif _ids(r.replay.data) != _ids(r.served):
            failures.append(f"{_where(r.served)}: fetched {_ids(r.replay.data)[:6]}, served {_ids(r.served)[:6]}")
        elif _reasons(r.replay.data) != _reasons(r.served):
            failures.append(f"{_where(r.served)}: same items but different reasons")
        else:
            same += 1
    refused = sum(1 for e in foreign if e.status == 404)
    failures += [f"another user's request for a list: {e.summary()}, expected 404" for e in foreign if e.status != 404]
    if not replays:
        failures.append("no served list to fetch again")
    if not foreign:
        failures.append("no other user was tried")
    counts = {"lists_fetched": len(replays), "same_items_order_reasons": same, "other_user_tries": len(foreign),
              "other_user_404": refused}
    return _result("Art. 15", "explanation on request", failures, counts)


def _labels(item: dict[str, Any]) -> list[Any]:
    labels = item.get("labels")
    return labels if isinstance(labels, list) else []


def check_minors(user_id: str | None, set_on: Exchange | None, responses: Sequence[Exchange],
                 original: Exchange | None, restored: Exchange | None) -> CheckResult:
    """Art. 16: in minors mode every item is labelled minor_safe on every surface and page; a 403
    refusal for curfew or the daily limit is allowed (counted), any other error fails."""
    failures: list[str] = []
    if user_id is None:
        return _result("Art. 16", "minors mode", ["no known user to put in minors mode"], {}, ran=False)
    if set_on is None or not set_on.ok or set_on.data.get("minor") is not True:
        failures.append(f"user {user_id}: minor_mode=true: {_said(set_on)}"
                        + (f", settings say minor={set_on.data.get('minor')!r}" if set_on and set_on.ok else ""))
    served = items = unlabelled = flag_off = 0
    refused: Counter[str] = Counter()
    for e in responses:
        if e.ok:
            served += 1
            body = e.data if isinstance(e.body, dict) else {"items": e.body}
            if body.get("minor_mode") is False:
                flag_off += 1
                failures.append(f"{e.method} {e.path}: response says minor_mode false")
            for item in _items(body):
                items += 1
                if MINOR_SAFE not in _labels(item):
                    unlabelled += 1
                    failures.append(f"{e.method} {e.path} ({_where(body)}): item {item.get('item_id')} "
                                    f"labels {_labels(item)}, no {MINOR_SAFE!r}")
        elif e.status == 403 and e.data.get("code") in REFUSAL_CODES:
            refused[e.data["code"]] += 1
        else:
            failures.append(f"{e.summary()}: neither a list nor a minors refusal")
    if not _same_settings(original, restored):
        failures.append(f"user {user_id}: settings not restored: before {original.data if original else None}, "
                        f"after {restored.data if restored else None}")
    if not responses:
        failures.append("no request was made in minors mode")
    counts = {"requests": len(responses), "lists_served": served, "items": items,
              "items_without_minor_safe": unlabelled,
              "minor_mode_flag_off": flag_off, "refused_curfew": refused["minors_curfew"],
              "refused_daily_limit": refused["minors_daily_limit"]}
    notes = [f"user {user_id}"]
    if responses and not served:
        notes.append("every request was refused (curfew or daily limit): labels could not be checked at this hour")
    return _result("Art. 16", "minors mode", failures, counts, notes)


def check_filing(exchanges: Sequence[Exchange], transparency: Exchange | None, page: Exchange | None) -> CheckResult:
    """Art. 22: every response carries the filing number header, equal to the one the transparency
    notice publishes; the HTML notice shows it."""
    failures: list[str] = []
    published = transparency.data.get("filing_number") if transparency is not None and transparency.ok else None
    if not isinstance(published, str) or not published.strip():
        failures.append(f"GET /v1/transparency publishes no filing number: {_said(transparency, 'not requested')}")
        published = None
    responses = [e for e in exchanges if e.status != 0]
    missing = mismatched = body_mismatch = 0
    for e in responses:
        value = (e.headers.get(FILING_HEADER) or "").strip()
        if not value:
            missing += 1
            failures.append(f"{e.method} {e.path} -> {e.status}: no {FILING_HEADER} header")
        elif published is not None and value != published:
            mismatched += 1
            failures.append(f"{e.method} {e.path}: header {value!r} differs from the published {published!r}")
        in_body = e.data.get("filing_number") if e.path == RECOMMENDATIONS_PATH else None
        if in_body is not None and published is not None and in_body != published:
            body_mismatch += 1
            failures.append(f"{e.method} {e.path}: body filing_number {in_body!r} differs from the published "
                            f"{published!r}")
    shown = bool(published and page is not None and page.ok and isinstance(page.body, str)
                 and published in html.unescape(page.body))
    if published and not shown:
        failures.append(f"GET /transparency does not show {published!r}: {_said(page, 'not requested')}")
    if not responses:
        failures.append("no responses received")
    counts = {"responses": len(responses), "no_response": len(exchanges) - len(responses), "header_missing": missing,
              "header_mismatch": mismatched, "body_mismatch": body_mismatch, "html_shows_number": int(shown)}
    return _result("Art. 22", "filing number", failures, counts, [f"filing number {published!r}"] if published else [])


def check_log(replays: Sequence[Replay], verify: Exchange | None, verify_unauthorized: Exchange | None) -> CheckResult:
    """Art. 23: every list served to the audit is in the log (retrievable by request id and user),
    the log's hash chain and seals verify, and the verify endpoint needs the admin token."""
    failures = [f"{_where(r.served)}: not retrievable: {r.replay.summary()}" for r in replays if not r.replay.ok]
    if not replays:
        failures.append("no served list to look up")
    ok = verify is not None and verify.ok and verify.data.get("ok") is True
    if not ok:
        why = verify.data.get("first_bad") or verify.data.get("summary") if verify is not None and verify.ok else None
        failures.append(f"GET /v1/admin/logs/verify: {_said(verify, 'not requested')}"
                        + (f", ok={verify.data.get('ok')!r}, {why}" if verify is not None and verify.ok else ""))
    guarded = verify_unauthorized is not None and verify_unauthorized.status == 401
    if not guarded:
        failures.append(f"GET /v1/admin/logs/verify without the token: "
                        f"{_said(verify_unauthorized, 'not requested')}, expected 401")
    counts = {"served_lists": len(replays), "retrievable": sum(1 for r in replays if r.replay.ok), "verify_ok": int(ok),
              "log_records": verify.data.get("records", 0) if verify is not None else 0,
              "admin_token_required": int(guarded)}
    return _result("Art. 23", "recommendation log", failures, counts)


@dataclass
class ComplaintTrial:
    """What the Art. 26 complaint trial saw."""

    user_id: str | None = None
    subject_id: str | None = None
    resolution: str = ""
    filed: Exchange | None = None
    fetched: Exchange | None = None
    foreign: Exchange | None = None  # the same complaint asked for by another user
    acknowledged: Exchange | None = None
    resolved: Exchange | None = None
    final: Exchange | None = None


def _when(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_complaints(trial: ComplaintTrial) -> CheckResult:
    """Art. 26: a complaint about a served list is accepted (201) with due dates, can be followed
    by its user (404 for others), and moves received -> acknowledged -> resolved with the resolution."""
    failures: list[str] = []
    if trial.user_id is None or trial.subject_id is None:
        return _result("Art. 26", "complaints", ["no served list to complain about"], {}, ran=False)
    filed = trial.filed
    if filed is None or filed.status != 201:
        failures.append(f"filing: {_said(filed)}, expected 201")
    else:
        data = filed.data
        ack, due = _when(data.get("acknowledge_due")), _when(data.get("resolve_due"))
        if data.get("status") != "received" or not data.get("id"):
            failures.append(f"filing: status {data.get('status')!r}, id {data.get('id')!r}; "
                            "expected 'received' and an id")
        if ack is None or due is None or ack > due:
            failures.append(f"filing: due dates acknowledge {data.get('acknowledge_due')!r}, "
                            f"resolve {data.get('resolve_due')!r}")
    steps = (("fetching it back", trial.fetched, 200, "received"),
             ("acknowledging", trial.acknowledged, 200, "acknowledged"),
             ("resolving", trial.resolved, 200, "resolved"),
             ("final state", trial.final, 200, "resolved"))
    for label, exchange, status, expected in steps:
        if exchange is None or exchange.status != status or exchange.data.get("status") != expected:
            got = exchange.data.get("status") if exchange is not None and exchange.status == status else None
            failures.append(f"{label}: {_said(exchange)}"
                            + (f", status {got!r}, expected {expected!r}" if exchange and exchange.ok else ""))
    if trial.final is not None and trial.final.ok and trial.final.data.get("resolution") != trial.resolution:
        failures.append(f"final state: resolution {trial.final.data.get('resolution')!r}, "
                        f"expected {trial.resolution!r}")
    if trial.foreign is None or trial.foreign.status != 404:
        failures.append(f"another user reading it: {_said(trial.foreign)}, expected 404")
    done = sum(1 for _, e, s, want in steps if e is not None and e.status == s and e.data.get("status") == want)
    counts = {"filed": int(filed is not None and filed.status == 201), "steps_ok": done, "steps": len(steps),
              "other_user_404": int(trial.foreign is not None and trial.foreign.status == 404)}
    notes = [f"complaint {filed.data.get('id') if filed is not None else None} by user {trial.user_id} about request "
             f"{trial.subject_id} stays on the server, resolved, marked as an audit test"]
    return _result("Art. 26", "complaints", failures, counts, notes)


def check_synthetic_labels(lists: Sequence[dict[str, Any]]) -> CheckResult:
    """Art. 9: an item labelled ai_generated anywhere carries that label everywhere it is shown
    (lists and fetched logs). Counts only what is visible: the API exposes no synthetic flag otherwise."""
    shown: dict[str, list[bool]] = defaultdict(list)
    where: dict[str, str] = {}
    for body in lists:
        for item in _items(body):
            item_id = str(item.get("item_id"))
            shown[item_id].append(AI_GENERATED in _labels(item))
            if AI_GENERATED not in _labels(item):
                where.setdefault(item_id, _where(body))
    labelled = {i for i, flags in shown.items() if any(flags)}
    inconsistent = sorted(i for i in labelled if not all(shown[i]))
    failures = [f"item {i} labelled {AI_GENERATED!r} elsewhere but not in {where[i]}" for i in inconsistent]
    counts = {"items_shown": sum(len(f) for f in shown.values()),
              "ai_generated_shown": sum(sum(f) for f in shown.values()),
              "distinct_ai_generated": len(labelled), "label_dropped": len(inconsistent)}
    notes = [] if labelled else ["no item labelled ai_generated was served; nothing to compare"]
    return _result("Art. 9", "synthetic-content label", failures, counts, notes)


# ---------------------------------------------------------------------------------------------------
# Trials: drive the server, restoring whatever they change
# ---------------------------------------------------------------------------------------------------
def walk_session(inspector: Inspector, user_id: str, surface: str, pages: int,
                 limit: int | None = None) -> list[Exchange]:
    """Pages 0..pages-1 of one session (chained by the returned session_id); stops at an error,
    an empty page, or after `limit` requests."""
    out: list[Exchange] = []
    session_id = None
    for page in range(pages):
        if limit is not None and len(out) >= limit:
            break
        exchange = inspector.recommend(user_id, surface, page, session_id)
        out.append(exchange)
        if not exchange.ok or not _items(exchange.data):
            break
        session_id = exchange.data.get("session_id") or session_id
    return out


def discover_users(inspector: Inspector, config: AuditConfig) -> tuple[list[str], set[str]]:
    """Known users: the ids given, else the first `config.users` of 1..50 whose home list is
    personalized. Returns (users, those seen with a personalized list)."""
    personalized: set[str] = set()
    if config.user_ids:
        for user in config.user_ids:
            exchange = inspector.recommend(user, "home")
            if exchange.ok and exchange.data.get("mode") == PERSONALIZED:
                personalized.add(user)
        return list(config.user_ids), personalized
    found: list[str] = []
    for user in DISCOVERY_IDS:
        exchange = inspector.recommend(user, "home")
        if exchange.ok and exchange.data.get("mode") == PERSONALIZED:
            found.append(user)
            personalized.add(user)
            if len(found) >= config.users:
                break
    return found, personalized


def crawl(inspector: Inspector, users: Sequence[str], config: AuditConfig) -> int:
    """Art. 12 crawl: sessions round-robin over users and surfaces until `config.lists` lists."""
    requested = 0
    while requested < config.lists and users:
        before = requested
        for user in users:
            for surface in config.surfaces:
                if requested >= config.lists:
                    return requested
                requested += len(walk_session(inspector, user, surface, config.pages, config.lists - requested))
        if requested == before:
            break
    return requested


def switch_trial(inspector: Inspector, users: Sequence[str], had_personalized: set[str]) -> SwitchTrial:
    """Art. 15: personalization off for two users, their very next lists, then back on; restores."""
    trial = SwitchTrial(users=list(users[:2]), had_personalized=set(had_personalized))
    try:
        for user in trial.users:
            trial.original[user] = inspector.settings(user)
        for user in trial.users:
            if trial.original[user].ok:
                trial.off[user] = inspector.put_settings(user, personalization=False)
                trial.off_list[user] = inspector.recommend(user, "home")
        for user in trial.users:
            if user in trial.off:
                trial.on[user] = inspector.put_settings(user, personalization=True)
                trial.on_list[user] = inspector.recommend(user, "home")
    finally:
        for user in trial.users:
            before = trial.original.get(user)
            if before is not None and before.ok and user in trial.off:
                inspector.put_settings(user, personalization=before.data.get("personalization"))
            trial.restored[user] = inspector.settings(user)
    return trial


def tag_trial(inspector: Inspector, users: Sequence[str], config: AuditConfig) -> TagTrial:
    """Art. 15: delete a user's top tag, check later explanations, then add it back."""
    trial = TagTrial()
    for user in users:
        trial.users_tried += 1
        view = inspector.request("GET", f"/v1/users/{quote(user, safe='')}/tags")
        tags = [t for t in view.data.get("tags") or [] if isinstance(t, dict) and t.get("name")] if view.ok else []
        if tags:
            trial.user_id = user
            trial.tag = str(max(tags, key=lambda t: float(t.get("weight") or 0.0))["name"])
            break
    if trial.user_id is None or trial.tag is None:
        return trial
    user, tag = trial.user_id, trial.tag
    path = f"/v1/users/{quote(user, safe='')}/tags"

    def lists() -> list[dict[str, Any]]:
        out = []
        for surface in config.surfaces:
            for exchange in walk_session(inspector, user, surface, config.pages):
                if exchange.ok:
                    out.append(exchange.data)
                else:
                    trial.list_errors.append(exchange)
        return out

    trial.before = lists()
    trial.delete = inspector.request("DELETE", f"{path}/{quote(tag, safe='')}")
    try:
        if trial.delete.ok:
            trial.after = lists()
            trial.tags_after = inspector.request("GET", path)
    finally:
        if trial.delete.ok:
            trial.restore = inspector.request("POST", path, json={"tag": tag, "action": "add"})
    return trial


def minors_trial(inspector: Inspector, user: str | None, config: AuditConfig) -> dict[str, Any]:
    """Art. 16: minors mode on for one user, lists across surfaces and pages plus the trending list;
    the setting is restored to what it was."""
    if user is None:
        return {"user_id": None, "set_on": None, "responses": [], "original": None, "restored": None}
    original = inspector.settings(user)
    set_on, responses = None, []
    try:
        if original.ok:
            set_on = inspector.put_settings(user, minor_mode=True)
            if set_on.ok:
                for surface in config.minor_surfaces:
                    responses += walk_session(inspector, user, surface, config.pages)
                responses.append(inspector.request("GET", "/v1/trending", params={"user_id": user, "k": config.k}))
    finally:
        if set_on is not None and original.ok:
            inspector.put_settings(user, minor_mode=original.data.get("minor_mode"))
    return {"user_id": user, "set_on": set_on, "responses": responses, "original": original,
            "restored": inspector.settings(user)}


def complaint_trial(inspector: Inspector, served: Sequence[dict[str, Any]], users: Sequence[str]) -> ComplaintTrial:
    """Art. 26: file a complaint about a served list, follow it, and have it acknowledged and resolved."""
    first = next((b for b in served if b.get("request_id") and b.get("user_id")), None)
    if first is None:
        return ComplaintTrial()
    user = str(first["user_id"])
    other_user = _other_user(user, users)
    trial = ComplaintTrial(user_id=user, subject_id=str(first["request_id"]),
                           resolution="Compliance audit test case: no action needed.")
    trial.filed = inspector.request("POST", "/v1/complaints", json={
        "kind": "complaint", "subject_type": "request", "subject_id": trial.subject_id, "user_id": user,
        "text": "Automated compliance audit: test complaint about a served list; resolve without action.",
    })
    complaint_id = trial.filed.data.get("id") if trial.filed.status == 201 else None
    if complaint_id is None:
        return trial
    path = f"/v1/complaints/{quote(str(complaint_id), safe='')}"
    trial.fetched = inspector.request("GET", path, params={"user_id": user})
    trial.foreign = inspector.request("GET", path, params={"user_id": other_user})
    admin = f"/v1/admin/complaints/{quote(str(complaint_id), safe='')}"
    trial.acknowledged = inspector.request("POST", f"{admin}/acknowledge", admin=True)
    trial.resolved = inspector.request("POST", f"{admin}/resolve", admin=True,
                                       json={"status": "resolved", "resolution": trial.resolution})
    trial.final = inspector.request("GET", path, params={"user_id": user})
    return trial


def replay_all(inspector: Inspector, served: Sequence[dict[str, Any]]) -> list[Replay]:
    """Fetch every served list again by request id, as its user."""
    out = []
    for body in served:
        request_id, user = body.get("request_id"), body.get("user_id")
        if request_id and user:
            exchange = inspector.request("GET", f"{RECOMMENDATIONS_PATH}/{quote(str(request_id), safe='')}",
                                         params={"user_id": str(user)})
            out.append(Replay(body, exchange))
    return out


def _other_user(user: str, users: Sequence[str]) -> str:
    return next((u for u in users if u != user), f"{user}-audit-other")


# ---------------------------------------------------------------------------------------------------
# The whole audit
# ---------------------------------------------------------------------------------------------------
def run_audit(base_url: str, config: AuditConfig | None = None, client: httpx.Client | None = None) -> AuditReport:
    """Audit the server at `base_url` over HTTP; `client` (e.g. FastAPI's TestClient) replaces the
    default httpx.Client. Raises AuditError when the server cannot be audited at all."""
    config = config or AuditConfig()
    base_url = check_base_url(base_url)
    started = datetime.now(UTC)
    inspector = Inspector(base_url, config, client)
    try:
        health = inspector.request("GET", "/healthz")
        if health.status == 0:
            raise AuditError(f"--url: cannot reach {base_url}: {health.error}")
        if not health.ok or health.data.get("ready") is False:
            why = f"{health.summary()} {health.data.get('error') or ''}".strip()
            raise AuditError(f"{base_url} is not ready to audit: {why}")
        transparency = inspector.request("GET", "/v1/transparency")
        page = inspector.request("GET", "/transparency")
        policy = expected_policy(transparency.data) if transparency.ok else ExpectedPolicy()

        rng = random.Random(config.seed)
        users, personalized = discover_users(inspector, config)
        order = list(users)
        rng.shuffle(order)
        crawl(inspector, order, config)
        switch = switch_trial(inspector, [u for u in order if u in personalized] or order, personalized)
        tags = tag_trial(inspector, order[2:] + order[:2], config)
        minor_user = next((u for u in reversed(order) if u != tags.user_id), order[0] if order else None)
        minors = minors_trial(inspector, minor_user, config)
        served = served_lists(inspector.exchanges)
        complaint = complaint_trial(inspector, served, order)
        replays = replay_all(inspector, served)
        foreign = [inspector.request("GET", f"{RECOMMENDATIONS_PATH}/{quote(str(b['request_id']), safe='')}",
                                     params={"user_id": _other_user(str(b["user_id"]), order)})
                   for b in served[:3]]
        verify = inspector.request("GET", "/v1/admin/logs/verify", admin=True)
        verify_unauthorized = inspector.request("GET", "/v1/admin/logs/verify")

        sessions = sessions_from(inspector.exchanges)
        checks = [
            check_dedup(sessions),
            check_dispersal(sessions, policy.dispersal_window, policy.dispersal_max, policy.dispersal_across_pages),
            check_explanations(served),
            check_front_screen(served, policy),
            check_personalization_switch(switch),
            check_tag_deletion(tags),
            check_explanation_on_request(replays, foreign),
            check_minors(**minors),
            check_filing(inspector.exchanges, transparency, page),
            check_log(replays, verify, verify_unauthorized),
            check_complaints(complaint),
            check_synthetic_labels(served + [r.replay.data for r in replays if r.replay.ok]),
        ]
        statuses = Counter(str(e.status) for e in inspector.exchanges)
        totals = {
            "requests": len(inspector.exchanges), "by_status": dict(sorted(statuses.items())),
            "lists_served": len(served), "items_served": sum(len(_items(b)) for b in served),
            "sessions": len(sessions), "checks": len(checks),
            "checks_passed": sum(c.passed for c in checks), "checks_failed": sum(not c.passed for c in checks),
        }
        notes = [] if users else ["no known user found: user ids 1..50 gave no personalized list; pass --user-ids"]
        if not transparency.ok:
            notes.append(f"policy read from defaults: {transparency.summary()}")
        server = {key: health.data.get(key) for key in ("model_version", "policy_hash", "index_build_id", "model_uri",
                                                        "filing_number", "status")}
        return AuditReport(
            base_url=base_url, started_at=started.isoformat(), finished_at=datetime.now(UTC).isoformat(),
            server=server, policy=asdict(policy), config=asdict(config), users=order, checks=checks,
            totals=totals, notes=notes,
            exchanges=[{"method": e.method, "path": e.path, "status": e.status,
                        "request_id": e.headers.get(REQUEST_ID_HEADER), "error": e.error} for e in inspector.exchanges],
        )
    finally:
        inspector.close()
