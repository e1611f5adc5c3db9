"""What the audit hands back: one `CheckResult` per article check (passed, counts, example
failures) and the `AuditReport` around them, written as JSON by `recsys audit --out`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_DETAILS = 10


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
    """The whole audit: the server and policy it saw, every check, totals, and each exchange (method,
    path, status, request id) so a finding can be traced in the server's log."""

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
    exchanges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; the admin token is left out."""
        out = asdict(self)
        out["passed"] = self.passed
        out["config"].pop("admin_token", None)
        return out


def result(article: str, name: str, failures: list[str], counts: dict[str, Any],
           notes: Iterable[str] = (), ran: bool = True) -> CheckResult:
    """A CheckResult that fails on any failure, or when the check could not run at all."""
    counts = {"failures": len(failures), **counts}
    return CheckResult(article, name, ran and not failures, counts, failures[:MAX_DETAILS], list(notes))
