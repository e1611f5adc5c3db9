"""Complaints, reports and appeals (Art. 22 (draft 26)): what a user may file, its status flow and deadlines.

Art. 22 (draft 26) requires a convenient portal for complaints and reports, prompt handling, and an appeal
channel with timely feedback. A case moves received -> acknowledged -> resolved | rejected, with
an acknowledgement deadline in hours and a resolution deadline in calendar days from filing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Kind = Literal["complaint", "report", "appeal"]
SubjectType = Literal["item", "request", "tag", "other"]
Status = Literal["received", "acknowledged", "resolved", "rejected"]

STATUSES: tuple[str, ...] = ("received", "acknowledged", "resolved", "rejected")
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"acknowledged"}),
    "acknowledged": frozenset({"resolved", "rejected"}),
    "resolved": frozenset(),
    "rejected": frozenset(),
}


class TransitionError(ValueError):
    """A status change the flow does not allow; the message lists the allowed next statuses."""


class ComplaintsConfig(BaseModel):
    """Deadlines and size limits of the complaints portal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acknowledge_within_hours: int = Field(default=24, ge=1, le=24 * 30)
    resolve_within_days: int = Field(default=15, ge=1, le=365)
    max_text_chars: int = Field(default=2000, ge=10, le=100_000)

    @model_validator(mode="after")
    def _ack_before_resolve(self) -> ComplaintsConfig:
        if self.acknowledge_within_hours > self.resolve_within_days * 24:
            raise ValueError(
                f"acknowledge_within_hours ({self.acknowledge_within_hours}) must not exceed "
                f"resolve_within_days ({self.resolve_within_days}) x 24"
            )
        return self


def transition(current: str, new: str) -> Status:
    """Return `new` when the flow allows current -> new; raise TransitionError otherwise."""
    for name, value in (("current", current), ("new", new)):
        if value not in ALLOWED_TRANSITIONS:
            raise TransitionError(f"{name} status {value!r} is unknown; statuses are {', '.join(STATUSES)}")
    allowed = ALLOWED_TRANSITIONS[current]
    if new not in allowed:
        options = ", ".join(sorted(allowed)) if allowed else f"none ({current!r} is final)"
        raise TransitionError(f"cannot move a case from {current!r} to {new!r}; allowed next: {options}")
    return new  # type: ignore[return-value]


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: timezone-aware datetime required, got naive {value.isoformat()}")
    return value


def due_dates(created_at: datetime, config: ComplaintsConfig) -> tuple[datetime, datetime]:
    """(acknowledge by, resolve by) for a case filed at `created_at` (calendar time, exact hours)."""
    _aware(created_at, "created_at")
    return (
        created_at + timedelta(hours=config.acknowledge_within_hours),
        created_at + timedelta(days=config.resolve_within_days),
    )


class ComplaintIn(BaseModel):
    """A complaint, report or appeal as filed by a user (POST /v1/complaints).

    The text limit is `ComplaintsConfig.max_text_chars`: pass the deployment's config as
    validation context (`ComplaintIn.model_validate(data, context={"config": cfg})`, or use
    `parse_complaint`); without it the default limit applies.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Kind
    subject_type: SubjectType
    subject_id: str | None = Field(default=None, max_length=200)
    user_id: str = Field(min_length=1, max_length=128)
    text: str

    @field_validator("text")
    @classmethod
    def _text_within_limits(cls, value: str, info: ValidationInfo) -> str:
        context = info.context or {}
        config = context.get("config") or ComplaintsConfig()
        if not value:
            raise ValueError("text: describe the problem; an empty text cannot be handled")
        if len(value) > config.max_text_chars:
            raise ValueError(f"text: at most {config.max_text_chars} characters allowed, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _subject_named(self) -> ComplaintIn:
        if self.subject_type != "other" and not self.subject_id:
            raise ValueError(
                f"subject_id: required when subject_type is {self.subject_type!r} "
                "(the item id, request id or tag name the case is about)"
            )
        return self


def parse_complaint(data: dict[str, Any], config: ComplaintsConfig) -> ComplaintIn:
    """Validate a filed case against the deployment's limits."""
    return ComplaintIn.model_validate(data, context={"config": config})


class ComplaintOut(BaseModel):
    """A case as stored and returned: the filing, its status and its deadlines."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: Kind
    subject_type: SubjectType
    subject_id: str | None
    user_id: str
    text: str
    status: Status
    created_at: datetime
    acknowledge_due: datetime
    resolve_due: datetime
    acknowledged_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None


def open_case(complaint: ComplaintIn, case_id: str, created_at: datetime, config: ComplaintsConfig) -> ComplaintOut:
    """A newly received case with its deadlines set."""
    ack_due, resolve_due = due_dates(created_at, config)
    return ComplaintOut(
        id=case_id,
        **complaint.model_dump(),
        status="received",
        created_at=created_at,
        acknowledge_due=ack_due,
        resolve_due=resolve_due,
    )


def overdue(case: ComplaintOut, now: datetime) -> Literal["acknowledge", "resolve"] | None:
    """Which deadline an open case has missed at `now`, if any (for the audit and the ops view)."""
    _aware(now, "now")
    if case.status in ("resolved", "rejected"):
        return None
    if case.status == "received" and now > case.acknowledge_due:
        return "acknowledge"
    if now > case.resolve_due:
        return "resolve"
    return None
