"""The declared list policy (Art. 11, Art. 12, Art. 14 (draft 13) of the Provisions), as typed config and as
engine rules for one request.

- Art. 11: the first screen of the home page shows mainstream-pool items in configured slots, and
  operators can intervene by hand (pin, block, boost); every intervention names its operator and reason.
- Art. 12: content de-duplication and dispersal (打散) on every list, across the pages of a session.
- Art. 17 (draft 15) (user options) against information cocoons: one category's share of a session's
  positions stays under a cap (`SessionDiversityPolicy`), lower for a user who chose "broaden my
  feed"; a user's "fewer like this" down-weights the item's category for a period (`FeedbackPolicy`).
- Art. 14 (draft 13): no hidden manipulation of lists: the policy is declared config with a hash stamped on
  every response, rules give way only in the declared relaxation order, and every rule that could
  not be met is reported with the list.

The generic engine lives in `recsys.pipeline` (`rerank.select`, `rules/`); this module gives its rules their meaning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.pipeline.rules.session import CategoryPenalty, SessionShareCap
from recsys.pipeline.rules import (
    Boost,
    Dispersal,
    Exclude,
    Pin,
    PoolSlots,
    Rule,
    UniqueContent,
    UniqueItems,
    rule_from_config,
)

__all__ = [
    "BLOCK",
    "BOOST",
    "CONTENT_DEDUP",
    "DISPERSAL",
    "FEWER_LIKE_THIS",
    "FRONT_SCREEN",
    "HARD_RULES",
    "ITEM_DEDUP",
    "PIN",
    "RELAXABLE_RULES",
    "SESSION_DIVERSITY",
    "DedupPolicy",
    "DispersalPolicy",
    "FeedbackPolicy",
    "FrontScreenPolicy",
    "Intervention",
    "PolicyConfig",
    "PolicyText",
    "SessionDiversityPolicy",
    "build_rules",
    "config_hash",
    "describe",
    "dispersal_violations",
]

log = logging.getLogger(__name__)

# Rule names: they appear in responses (violations, policies), logs, metrics and the relaxation order.
ITEM_DEDUP = "item_dedup"
CONTENT_DEDUP = "content_dedup"
DISPERSAL = "dispersal"
FRONT_SCREEN = "front_screen"
PIN = "pin"
BLOCK = "block"
BOOST = "boost"
SESSION_DIVERSITY = "session_diversity"
FEWER_LIKE_THIS = "fewer_like_this"
RELAXABLE_RULES = (SESSION_DIVERSITY, DISPERSAL, FRONT_SCREEN, CONTENT_DEDUP)
HARD_RULES = (ITEM_DEDUP, PIN, BLOCK, BOOST, FEWER_LIKE_THIS)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DedupPolicy(_Config):
    """Art. 12 content de-duplication: items always; content keys unless switched off."""

    items: Literal[True] = True
    content: bool = True

    @field_validator("items", mode="before")
    @classmethod
    def _items_always(cls, value: Any) -> Any:
        if value is not True:
            raise ValueError("dedup.items cannot be turned off: an item is never shown twice in a session")
        return value


class DispersalPolicy(_Config):
    """Art. 12 dispersal (打散): at most `max_per_window` items of one category in any `window`
    consecutive positions, counting the previous page's tail when `across_pages`."""

    window: int = Field(default=5, ge=2, le=100)
    max_per_window: int = Field(default=2, ge=1)
    across_pages: bool = True

    @model_validator(mode="after")
    def _limit_below_window(self) -> DispersalPolicy:
        if self.max_per_window >= self.window:
            raise ValueError(
                f"dispersal.max_per_window ({self.max_per_window}) must be < dispersal.window ({self.window}); "
                "otherwise the rule never applies"
            )
        return self


def dispersal_violations(values: Sequence[Hashable | None], window: int, max_per_window: int) -> list[int]:
    """The positions (0-based) at which a list breaks Art. 12 dispersal: the value there (a category)
    occurs more than `max_per_window` times in the `window` positions ending there. None is no value.
    Used to measure lists after the fact (the Art. 8 review); the engine enforces the rule itself."""
    out = []
    for end, value in enumerate(values):
        if value is not None and list(values[max(0, end - window + 1): end + 1]).count(value) > max_per_window:
            out.append(end)
    return out


class FrontScreenPolicy(_Config):
    """Art. 11 front screen: on these surfaces and pages (0 = first page), at least `count` of these
    1-based positions are filled from the named editorial pool, whichever of them leave the list the
    most of the user's own ranking (`count` None: every listed position, the fixed-slot form).

    The default is "at least 2 editorial items within the first screen of 10". A config that lists
    `positions` without a `count` keeps every listed position editorial, exactly as before `count`
    existed (e.g. `positions = [1, 5]`: positions 1 and 5)."""

    surfaces: list[str] = ["home"]
    pages: list[int] = [0]
    # "At least 2 of positions 1-10": the engine never relaxes dispersal for it (when its bounded
    # search cannot place the editorial items, they take the places of the page found without
    # them, where every other rule still holds: `PoolCountCheck.substitute`).
    positions: list[int] = list(range(1, 11))
    count: int | None = Field(default=2, ge=1)
    pool: str = Field(default="mainstream", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _fixed_when_only_positions(cls, data: Any) -> Any:
        if isinstance(data, dict) and "positions" in data and "count" not in data:
            return {**data, "count": None}
        return data

    @field_validator("surfaces")
    @classmethod
    def _surfaces(cls, value: list[str]) -> list[str]:
        if any(not s.strip() for s in value):
            raise ValueError("front_screen.surfaces must be non-empty names")
        return sorted(set(value))

    @field_validator("pages")
    @classmethod
    def _pages(cls, value: list[int]) -> list[int]:
        if any(p < 0 for p in value):
            raise ValueError(f"front_screen.pages are 0-based page numbers (>= 0), got {value}")
        return sorted(set(value))

    @field_validator("positions")
    @classmethod
    def _positions(cls, value: list[int]) -> list[int]:
        if any(p < 1 for p in value):
            raise ValueError(f"front_screen.positions are 1-based positions on the page (>= 1), got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"front_screen.positions must not repeat, got {value}")
        return sorted(value)

    @model_validator(mode="after")
    def _count_fits(self) -> FrontScreenPolicy:
        if self.count is not None and self.count > len(self.positions):
            raise ValueError(f"front_screen.count ({self.count}) exceeds the {len(self.positions)} positions listed")
        return self

    @property
    def required(self) -> int:
        """How many editorial items the front screen carries (at most the positions listed)."""
        return len(self.positions) if self.count is None else self.count


class SessionDiversityPolicy(_Config):
    """Against information cocoons (Art. 17 (draft 15) user options; the 2024-25 campaign): across the
    pages of one session, at most `max_share` of the positions share a primary category
    (`broadened_max_share` for a user who chose "broaden my feed"). A session shorter than
    `min_positions` is held to the count `min_positions` would allow."""

    enabled: bool = True
    max_share: float = Field(default=0.3, gt=0, le=1)
    broadened_max_share: float = Field(default=0.2, gt=0, le=1)
    min_positions: int = Field(default=10, ge=1, le=1000)

    @model_validator(mode="after")
    def _broadened_is_lower(self) -> SessionDiversityPolicy:
        if self.broadened_max_share > self.max_share:
            raise ValueError(f"session_diversity.broadened_max_share ({self.broadened_max_share}) must be <= "
                             f"session_diversity.max_share ({self.max_share}): broadening a feed never narrows it")
        return self

    def cap(self, broaden: bool) -> float:
        return self.broadened_max_share if broaden else self.max_share


class FeedbackPolicy(_Config):
    """A user's negative feedback (Art. 17 (draft 15)): "not interested" and "fewer like this" remove the
    item and its content duplicates from every later list; "fewer like this" also down-weights the
    item's primary category for `fewer_like_this_days`, each of its items losing
    `category_penalty` x the spread of the request's scores."""

    fewer_like_this_days: int = Field(default=30, ge=1, le=3650)
    category_penalty: float = Field(default=0.5, ge=0, le=10)


BUILT_IN_ATTRIBUTES = ("item", "category", "content", "source")


class AttributeRule(_Config):
    """A list rule over any item attribute, declared in config (Art. 12 applied to a column of the
    dataset's items, e.g. a creator or series): `dispersal` keeps at most `max_per_window` items
    of one value in any `window` consecutive positions; `unique` shows each value once per session.
    Built through the engine's one rule registry (`recsys.pipeline.rules.RULE_TYPES`)."""

    type: Literal["dispersal", "unique"]
    attribute: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    window: int | None = Field(None, ge=2, le=100)
    max_per_window: int | None = Field(None, ge=1)
    across_pages: bool = True
    title: str | None = Field(None, max_length=80, description="how the transparency page names the rule")

    @model_validator(mode="after")
    def _buildable(self) -> AttributeRule:
        if self.type == "dispersal" and (self.window is None or self.max_per_window is None):
            raise ValueError(f"rules.{self.name}: a dispersal rule needs window and max_per_window")
        if self.type == "unique" and (self.window is not None or self.max_per_window is not None):
            raise ValueError(f"rules.{self.name}: a unique rule takes no window or max_per_window")
        self.rule()  # the engine's own checks (e.g. max_per_window < window), as a config error
        return self

    def rule(self) -> Rule:
        spec: dict[str, Any] = {"type": self.type, "attribute": self.attribute, "name": self.name}
        if self.type == "dispersal":
            spec.update(window=self.window, max_per_window=self.max_per_window, across_pages=self.across_pages)
        return rule_from_config(spec)


class PolicyConfig(_Config):
    """The whole list policy. Rules named in `relaxation_order` may give way, first named first,
    only when the candidates cannot satisfy all of them; rules not named never give way."""

    dedup: DedupPolicy = DedupPolicy()
    dispersal: DispersalPolicy = DispersalPolicy()
    front_screen: FrontScreenPolicy = FrontScreenPolicy()
    relaxation_order: list[str] = [SESSION_DIVERSITY, DISPERSAL, FRONT_SCREEN, CONTENT_DEDUP]
    max_k: int = Field(100, ge=1, le=1000)
    rules: list[AttributeRule] = []  # rules over any item attribute (README: "add a policy")
    session_diversity: SessionDiversityPolicy = SessionDiversityPolicy()
    feedback: FeedbackPolicy = FeedbackPolicy()

    @model_validator(mode="after")
    def _relaxation_order(self) -> PolicyConfig:
        names = [rule.name for rule in self.rules]
        clash = [n for n in names if n in (*RELAXABLE_RULES, *HARD_RULES)] or [n for n in names if names.count(n) > 1]
        if clash:
            raise ValueError(f"rules: name {clash[0]!r} is taken; give each rule its own name")
        relaxable = (*RELAXABLE_RULES, *names)
        for name in self.relaxation_order:
            if name in HARD_RULES:
                raise ValueError(
                    f"relaxation_order: {name!r} is a hard rule and is never relaxed; "
                    f"relaxable rules: {', '.join(relaxable)}"
                )
            if name not in relaxable:
                raise ValueError(f"relaxation_order: unknown rule {name!r}; relaxable rules: {', '.join(relaxable)}")
        if len(set(self.relaxation_order)) != len(self.relaxation_order):
            raise ValueError(f"relaxation_order names a rule twice: {self.relaxation_order}")
        return self

    @property
    def extra_attributes(self) -> tuple[str, ...]:
        """Item attributes the declared rules name beyond the engine's built-in columns."""
        return tuple(sorted({r.attribute for r in self.rules} - set(BUILT_IN_ATTRIBUTES)))

    @model_validator(mode="after")
    def _positions_fit_the_page(self) -> PolicyConfig:
        beyond = [p for p in self.front_screen.positions if p > self.max_k]
        if beyond:
            raise ValueError(f"front_screen.positions {beyond} lie beyond max_k ({self.max_k})")
        return self

    def check_k(self, k: int) -> int:
        """`k` if it is a page size this policy serves, else a ValueError naming the bound."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k:
            raise ValueError(f"k must be an integer in 1..{self.max_k} (policy max_k), got {k!r}")
        return k

    @classmethod
    def from_file(cls, path: str | Path) -> PolicyConfig:
        """Load from a JSON or TOML file; errors name the file and the bad field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read policy file {path}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"invalid policy file {path}: {_one_line(exc)}") from None


def _one_line(exc: ValidationError) -> str:
    """`field.path: message; ...` instead of pydantic's multi-line report."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def config_hash(config: PolicyConfig) -> str:
    """Short stable hash of the canonical JSON of `config` (stamped on every response)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------
# Manual intervention (Art. 11, Art. 14 (draft 13)): the data shape; the serving layer stores and audits them.
# ---------------------------------------------------------------------------------------------------
class Intervention(BaseModel):
    """An operator's pin, block or boost. Pins: `item_id` at 1-based `position` of `page`.
    Blocks and boosts: one of `item_id` or `category`; boosts multiply scores by `factor`.
    `surface` None means every surface."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int | None = None
    kind: Literal["pin", "block", "boost"]
    surface: str | None = None
    item_id: str | int | None = None
    category: str | None = None
    position: int | None = Field(None, ge=1)
    page: int = Field(0, ge=0)
    factor: float | None = Field(None, gt=0, le=10)
    operator: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    # Two-person rule (compliance/oversight.py): a sensitive proposal is "pending" until a second
    # account approves it; only "active" ones are applied.
    status: Literal["active", "pending", "rejected"] = "active"

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Intervention:
        """The one shape check of an intervention: the API validates a write with it, and
        serving validates every stored record with it before using one (a record that fails is
        skipped and reported, never served)."""
        label = f"intervention {self.id}" if self.id is not None else "intervention"
        given = {name for name in ("item_id", "category", "position", "factor") if getattr(self, name) is not None}
        if self.kind == "pin":
            if self.item_id is None or self.position is None:
                raise ValueError(f"{label}: a pin needs item_id and position (1-based)")
            allowed = {"item_id", "position"}
        else:
            if (self.item_id is None) == (self.category is None):
                raise ValueError(f"{label}: a {self.kind} needs exactly one of item_id or category")
            allowed = {"item_id", "category", "factor"} if self.kind == "boost" else {"item_id", "category"}
            if self.kind == "boost" and self.factor is None:
                raise ValueError(f"{label}: a boost needs a factor > 0")
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{label}: a {self.kind} does not take {', '.join(extra)}")
        return self

    def is_active(self, now: datetime) -> bool:
        """Approved (status active), not revoked, and not expired at `now` (naive datetimes are taken as UTC)."""
        if self.revoked_at is not None or self.status != "active":
            return False
        return self.expires_at is None or _utc(self.expires_at) > _utc(now)

    def applies_to(self, surface: str) -> bool:
        return self.surface is None or self.surface == surface


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _lookup(index: Mapping[Any, Any] | None, key: str | int) -> int | None:
    """Engine index of an item id, trying the id as given, as text, and as a number."""
    if index is None:
        try:
            return int(key)
        except (TypeError, ValueError):
            return None
    for candidate in (key, str(key)):
        if candidate in index:
            return int(index[candidate])
    if isinstance(key, str) and key.lstrip("-").isdigit() and int(key) in index:
        return int(index[int(key)])
    return None


# ---------------------------------------------------------------------------------------------------
# Config + interventions -> engine rules for one request
# ---------------------------------------------------------------------------------------------------
def build_rules(
    config: PolicyConfig,
    surface: str,
    page: int,
    interventions: Iterable[Intervention | Mapping[str, Any]] = (),
    *,
    item_index: Mapping[Any, Any] | None = None,
    category_index: Mapping[str, int] | None = None,
    now: datetime | None = None,
    session_categories: Iterable[int] = (),
    broaden: bool = False,
    fewer_categories: Iterable[int] = (),
) -> tuple[list[Rule], tuple[str, ...]]:
    """Engine rules and relaxation order for one list request on `surface`, page `page` (0-based).

    Front-screen slots only on the configured surfaces and pages; pins for this surface and page;
    boosts and blocks for this surface. `item_index` maps intervention item ids to engine item
    indices (None: ids are indices); `category_index` maps category names to codes. Interventions
    that are revoked or expired at `now`, or that name an unknown item or category, are skipped
    (logged). When two pins claim one position, the most recent wins.

    The user's part: `session_categories` are the primary categories of the session's earlier
    pages (the session diversity cap counts them), `broaden` the user's "broaden my feed" option,
    `fewer_categories` the category codes the user asked to see fewer of (still in their period).
    """
    if not isinstance(surface, str) or not surface:
        raise ValueError(f"surface must be a non-empty string, got {surface!r}")
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise ValueError(f"page must be an integer >= 0, got {page!r}")
    now = now or datetime.now(UTC)

    rules: list[Rule] = [UniqueItems(ITEM_DEDUP)]
    if config.dedup.content:
        rules.append(UniqueContent(CONTENT_DEDUP))
    rules.append(
        Dispersal(
            config.dispersal.window,
            config.dispersal.max_per_window,
            attribute="category",
            across_pages=config.dispersal.across_pages,
            name=DISPERSAL,
        )
    )
    rules.extend(spec.rule() for spec in config.rules)
    diversity = config.session_diversity
    if diversity.enabled:
        rules.append(SessionShareCap.for_session(list(session_categories), diversity.cap(broaden),
                                                 min_positions=diversity.min_positions, name=SESSION_DIVERSITY))
    fewer = frozenset(int(c) for c in fewer_categories)
    if fewer and config.feedback.category_penalty > 0:
        rules.append(CategoryPenalty(fewer, config.feedback.category_penalty, name=FEWER_LIKE_THIS))
    front = config.front_screen
    if surface in front.surfaces and page in front.pages and front.positions:
        count = None if front.count is None or front.count == len(front.positions) else front.count
        rules.append(PoolSlots(tuple(p - 1 for p in front.positions), front.pool, name=FRONT_SCREEN, count=count))

    pins: list[tuple[tuple[datetime, int], Pin]] = []
    blocked_items: set[int] = set()
    blocked_categories: set[int] = set()
    for raw in interventions:
        intervention = raw if isinstance(raw, Intervention) else _parse(raw)
        if not (intervention.applies_to(surface) and intervention.is_active(now)):
            continue
        item = category = None
        if intervention.item_id is not None:
            item = _lookup(item_index, intervention.item_id)
            if item is None:
                log.warning("skipping intervention %s: unknown item %r", intervention.id, intervention.item_id)
                continue
        if intervention.category is not None:
            category = (category_index or {}).get(intervention.category)
            if category is None:
                log.warning("skipping intervention %s: unknown category %r", intervention.id, intervention.category)
                continue
        # (the fields each kind needs are there: Intervention's validator)
        if intervention.kind == "pin":
            if intervention.page == page and intervention.position is not None and item is not None:
                recency = (_utc(intervention.created_at) if intervention.created_at else datetime.min.replace(tzinfo=UTC),
                           intervention.id if intervention.id is not None else -1)
                pins.append((recency, Pin(intervention.position - 1, item, name=PIN)))
        elif intervention.kind == "block":
            if item is not None:
                blocked_items.add(item)
            elif category is not None:
                blocked_categories.add(category)
        elif intervention.factor is not None:
            rules.append(Boost(category=category, item=item, factor=float(intervention.factor), name=BOOST))
    if blocked_items:
        rules.append(Exclude(frozenset(blocked_items), attribute="item", name=BLOCK))
    if blocked_categories:
        rules.append(Exclude(frozenset(blocked_categories), attribute="category", name=BLOCK))
    # The engine lets the first pin at a position win: newest first.
    pins.sort(key=lambda entry: entry[0], reverse=True)
    rules.extend(pin for _, pin in pins)
    return rules, tuple(config.relaxation_order)


def _parse(raw: Mapping[str, Any]) -> Intervention:
    try:
        return Intervention.model_validate(dict(raw))
    except ValidationError as exc:
        raise ValueError(f"invalid intervention {dict(raw).get('id')!r}: {_one_line(exc)}") from None


# ---------------------------------------------------------------------------------------------------
# Human text for the transparency page
# ---------------------------------------------------------------------------------------------------
class PolicyText(BaseModel):
    """One policy as the transparency page shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    articles: tuple[int, ...]  # final Provisions numbers (compliance.articles.FINAL); cite() adds the draft alias
    title: str
    text: str


_TITLES = {ITEM_DEDUP: "No repeats", CONTENT_DEDUP: "Content de-duplication", DISPERSAL: "Dispersal (打散)",
           FRONT_SCREEN: "Front screen", SESSION_DIVERSITY: "Session diversity (no information cocoon)",
           FEWER_LIKE_THIS: "Not interested / fewer like this"}


def _title(config: PolicyConfig, name: str) -> str:
    """A rule's title on the transparency page (built-in, or a declared rule's own)."""
    if name in _TITLES:
        return _TITLES[name]
    declared = next((r for r in config.rules if r.name == name), None)
    return (declared.title if declared and declared.title else name.replace("_", " ").capitalize())


def _and(words: Iterable[object]) -> str:
    names = [str(w) for w in words]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _pages(pages: list[int]) -> str:
    """Pages in the API's numbering (page 0 is the front screen, the first page a user sees)."""
    if pages == [0]:
        return "on the front screen (page 0)"
    return f"on pages {_and(pages)} (page 0 is the front screen)"


def _span(positions: list[int]) -> str:
    """"1 to 10" for a run of consecutive positions, else "2, 4 and 7"."""
    if len(positions) > 2 and positions == list(range(positions[0], positions[-1] + 1)):
        return f"{positions[0]} to {positions[-1]}"
    return _and(positions)


def _front_positions_text(f: FrontScreenPolicy) -> str:
    """The front-screen promise as the engine keeps it: fixed positions, or at least n of a set."""
    plural = "s" if len(f.positions) > 1 else ""
    if f.count is None or f.count == len(f.positions):
        return (f"position{plural} {_and(f.positions)} show items from the editorial '{f.pool}' pool, "
                "whatever the personal ranking.")
    return (f"at least {f.count} of positions {_span(f.positions)} show items from the editorial '{f.pool}' pool, "
            f"whatever the personal ranking: the editorial items this user's ranking scores highest, at the "
            f"positions that ranking gives them, or at the last of these positions when it ranks them lower.")


def describe(config: PolicyConfig) -> list[PolicyText]:
    """Plain-language description of each policy in `config`, in the order they apply."""
    d, f = config.dispersal, config.front_screen
    out = [
        PolicyText(
            name=ITEM_DEDUP,
            articles=(12,),
            title=_TITLES[ITEM_DEDUP],
            text="An item is shown at most once per session: never twice in one list, and never again "
            "on a later page of the same session.",
        ),
        PolicyText(
            name=CONTENT_DEDUP,
            articles=(12,),
            title=_TITLES[CONTENT_DEDUP],
            text=(
                "Items that carry the same content (for example, the same work under another listing) "
                "are shown once per session; the highest-ranked copy is kept."
                if config.dedup.content
                else "Content de-duplication is switched off; only identical items are removed."
            ),
        ),
        PolicyText(
            name=DISPERSAL,
            articles=(12,),
            title=_TITLES[DISPERSAL],
            text=f"In any {d.window} consecutive positions, at most {d.max_per_window} items share a primary "
            f"category" + (", counted across page boundaries." if d.across_pages else ", within each page."),
        ),
    ]
    sd, fb = config.session_diversity, config.feedback
    out.append(PolicyText(
        name=SESSION_DIVERSITY, articles=(17,), title=_TITLES[SESSION_DIVERSITY],
        text=(f"Across the pages of one session, at most {sd.max_share:.0%} of the items share a primary category "
              f"({sd.broadened_max_share:.0%} for users who chose \"broaden my feed\" in their settings); a session "
              f"shorter than {sd.min_positions} items is held to what {sd.min_positions} would allow."
              if sd.enabled else "The session diversity cap is switched off."),
    ))
    out.append(PolicyText(
        name=FEWER_LIKE_THIS, articles=(17,), title=_TITLES[FEWER_LIKE_THIS],
        text=(f"On any item of a list, a user can say \"not interested\" or \"fewer like this\" "
              f"(POST /v1/users/{{user_id}}/feedback). The item and every copy of its content leave all of that "
              f"user's later lists, on every surface, until the user undoes it; \"fewer like this\" also ranks the "
              f"item's category lower for {fb.fewer_like_this_days} days. Nobody is ever asked to pick interest tags "
              f"to use the service."),
    ))
    for rule in config.rules:
        if rule.type == "dispersal":
            text = (f"In any {rule.window} consecutive positions, at most {rule.max_per_window} items share a "
                    f"{rule.attribute}" + (", counted across page boundaries." if rule.across_pages else ", within each page."))
        else:
            text = f"Items with the same {rule.attribute} are shown once per session."
        out.append(PolicyText(name=rule.name, articles=(12,), title=_title(config, rule.name), text=text))
    if f.surfaces and f.pages and f.positions:
        out.append(
            PolicyText(
                name=FRONT_SCREEN,
                articles=(11,),
                title=_TITLES[FRONT_SCREEN],
                text=f"On the {_and(f.surfaces)} surface{'s' if len(f.surfaces) > 1 else ''}, "
                f"{_pages(f.pages)}, "
                + _front_positions_text(f),
            )
        )
    else:
        out.append(PolicyText(name=FRONT_SCREEN, articles=(11,), title=_TITLES[FRONT_SCREEN],
                              text="No front-screen slots are configured."))
    out.append(
        PolicyText(
            name="interventions",
            articles=(11, 14),
            title="Manual intervention",
            text="Operators may pin an item to a position, block an item or category, or boost the "
            "scores of an item or category. Each intervention records its operator, reason and expiry; "
            "interventions never bring back an item already shown in the session.",
        )
    )
    order = config.relaxation_order
    if order:
        steps = ", then ".join(_title(config, name) for name in order)
        text = (
            f"When the available items cannot satisfy every rule at once, rules give way in this order: "
            f"{steps}; each only as far as needed, and every rule that gives way is reported with the list. "
            f"{_title(config, ITEM_DEDUP)} never gives way."
        )
    else:
        text = "No rule gives way: when the available items cannot satisfy every rule, the list is shorter."
    never = [name for name in RELAXABLE_RULES if name not in order]
    if order and never:
        text += f" Never relaxed: {', '.join(_title(config, name) for name in never)}."
    out.append(PolicyText(name="relaxation", articles=(12, 14), title="When rules conflict", text=text))
    return out
