"""How much the audit asks of a server: `AuditConfig` (checked on construction, errors naming the
flag) and `AuditError`, raised whenever the audit cannot run at all."""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL_SURFACES = ("home", "feed", "related", "trending")
DISCOVERY_IDS = tuple(str(n) for n in range(1, 51))  # MovieLens user ids
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@\-]+$")


class AuditError(RuntimeError):
    """The audit cannot run (bad flag, unreachable or unready server, request budget exhausted)."""


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
        """An upper bound on what the trials send (each list is also fetched back once); the
        inspector refuses to go past it."""
        discovery = len(self.user_ids) or len(DISCOVERY_IDS)
        users = max(self.users, len(self.user_ids))
        tag_lists = 2 * len(self.surfaces) * self.pages
        minor_lists = len(self.minor_surfaces) * self.pages
        served = discovery + self.lists + 4 + tag_lists + minor_lists
        probe, switch, tags, minors, complaint, foreign, verify = 3, 14, users + tag_lists + 3, minor_lists + 5, 6, 3, 2
        return probe + discovery + self.lists + switch + tags + minors + complaint + served + foreign + verify
