"""Named operators and the two-person rule for manual intervention (Art. 7, Art. 11, Art. 14 (draft 13) of the
Provisions).

- Art. 7: the provider staffs the service with people accountable for it: every manual change is
  made by a named account with a role, never by "whoever holds the shared token".
- Art. 11, Art. 14 (draft 13): manual intervention on lists (pins, blocks, boosts) is recorded and not hidden; the
  kinds declared sensitive here (by default pins and blocks that reach the front screen) take
  effect only after a *different* account with the approver role approves them, and both
  identities, times and reasons are kept with the intervention and in the log.

This module holds the rules only (roles, what each may do, which interventions are sensitive,
who may approve what); the state database and the HTTP routes apply them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["operator", "approver", "auditor"]
ROLES: tuple[Role, ...] = ("operator", "approver", "auditor")
ROLE_DESCRIPTIONS = {
    "operator": "proposes pins, blocks, boosts and feature-library entries; handles complaints",
    "approver": "everything an operator does, and approves or rejects another account's sensitive proposal",
    "auditor": "reads everything (interventions, complaints, logs, reviews); changes nothing",
}
# Intervention statuses: proposed and waiting for a second person, in force, or turned down.
PENDING, ACTIVE, REJECTED = "pending", "active", "rejected"
STATUSES = (PENDING, ACTIVE, REJECTED)


class OversightError(ValueError):
    """An action the rules of this module forbid; the message says which rule."""


def may_change(role: str) -> bool:
    """Operators and approvers change state; auditors only read."""
    return role in ("operator", "approver")


def may_approve(role: str) -> bool:
    return role == "approver"


class SensitiveRule(BaseModel):
    """Interventions of `kind` need a second person's approval; with `front_screen_only`, only
    those that reach a front screen (a pin on a front-screen surface and page, or a block or
    boost on a front-screen surface or on every surface)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["pin", "block", "boost"]
    front_screen_only: bool = True


class OversightConfig(BaseModel):
    """Which manual changes need two people. `sensitive: []` turns the two-person rule off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensitive: list[SensitiveRule] = Field(default_factory=lambda: [
        SensitiveRule(kind="pin", front_screen_only=True),
        SensitiveRule(kind="block", front_screen_only=True),
    ])


def requires_approval(kind: str, surface: str | None, page: int, config: OversightConfig,
                      front_screen_surfaces: Iterable[str], front_screen_pages: Iterable[int]) -> bool:
    """Whether an intervention of `kind` on `surface` (None: every surface) and `page` is sensitive."""
    surfaces = set(front_screen_surfaces)
    reaches_front = (surface is None or surface in surfaces) and (kind != "pin" or page in set(front_screen_pages))
    return any(rule.kind == kind and (reaches_front or not rule.front_screen_only) for rule in config.sensitive)


def check_approval(proposer: str, approver: str, approver_role: str, status: str) -> None:
    """OversightError unless `approver` may approve a proposal by `proposer` now in `status`."""
    if not may_approve(approver_role):
        raise OversightError(f"account {approver!r} has role {approver_role!r}: only an approver may approve")
    if approver == proposer:
        raise OversightError(f"two-person rule: {approver!r} proposed this intervention and cannot approve it; "
                             "another approver must")
    if status != PENDING:
        raise OversightError(f"the intervention is {status}, not pending: nothing to approve")
