"""The auditor's only way in: HTTP requests to one base URL. `Inspector` sends them (bounded by the
config's request budget, timed out, never following a redirect elsewhere) and records each as an
`Exchange`, which the checks read afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from auditor.config import AuditConfig, AuditError
from auditor.responses import items_of

FILING_HEADER = "x-algorithm-filing-number"
REQUEST_ID_HEADER = "x-request-id"
RECOMMENDATIONS_PATH = "/v1/recommendations"


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
        """The body when it is a JSON object, else an empty dict (so `.get` always works)."""
        return self.body if isinstance(self.body, dict) else {}

    def summary(self) -> str:
        tail = f" ({self.error})" if self.error else ""
        detail = self.data.get("detail") if not self.ok else None
        return f"{self.method} {self.path} -> {self.status}{tail}" + (f": {str(detail)[:120]}" if detail else "")


def said(exchange: Exchange | None, missing: str = "not attempted") -> str:
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


def user_path(user_id: str, *rest: str) -> str:
    """/v1/users/{user_id}/... with every segment quoted."""
    return "/".join(["/v1/users", quote(user_id, safe=""), *(quote(part, safe="") for part in rest)])


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

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
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
            body: Any
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

    def logged_list(self, request_id: str, user_id: str) -> Exchange:
        """GET /v1/recommendations/{request_id}?user_id=: a served list fetched back from the log."""
        return self.request("GET", f"{RECOMMENDATIONS_PATH}/{quote(request_id, safe='')}", params={"user_id": user_id})

    def settings(self, user_id: str) -> Exchange:
        return self.request("GET", user_path(user_id, "settings"))

    def put_settings(self, user_id: str, **values: Any) -> Exchange:
        return self.request("PUT", user_path(user_id, "settings"), json=values)

    def walk_session(self, user_id: str, surface: str, pages: int, limit: int | None = None) -> list[Exchange]:
        """Pages 0..pages-1 of one session (chained by the returned session_id); stops at an error,
        an empty page, or after `limit` requests."""
        out: list[Exchange] = []
        session_id = None
        for page in range(pages):
            if limit is not None and len(out) >= limit:
                break
            exchange = self.recommend(user_id, surface, page, session_id)
            out.append(exchange)
            if not exchange.ok or not items_of(exchange.data):
                break
            session_id = exchange.data.get("session_id") or session_id
        return out

