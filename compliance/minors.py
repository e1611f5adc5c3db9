"""Minors mode (Art. 18 (draft 16)): who is a minor, daily usage budgets by age band, and the night curfew.

Art. 18 (draft 16) asks for a mode suited to minors that does not induce addiction. The defaults follow the
2024 minors-mode guideline (移动互联网未成年人模式建设指南): under 8 years 40 minutes a day,
8-15 years 60 minutes, 16-17 years 120 minutes, and no service from 22:00 to 06:00 local time.
Minors get the non-personalized minor-safe lists by default (`personalized=False`): no personal
profiling beyond what safety needs. After `rest_reminder_minutes` (30) of continuous use the
response carries a rest reminder the client shows. A guardian may make every rule stricter for
their minor (`GuardianControls`: a lower daily limit, an extra curfew window, a narrower content
band); nothing a guardian sets can loosen the configured defaults.

Usage rule (quoted in the README): the usage time of a day, in the configured time zone, is
measured from the user's requests and events. The first activity of a local day counts a fixed
`activity_floor_seconds`; each later activity adds the time since the user's previous activity
that day when that gap is at most `activity_gap_cap_seconds`, and `activity_floor_seconds`
otherwise (the user came back after a pause). An activity older than the last one recorded adds
nothing, so usage never decreases; the count starts again at the local day boundary.

Everything here is pure: times are timezone-aware datetimes passed in by the caller (serving owns
the clock), usage state is a value the caller stores and passes back.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_AGE = 150
SECONDS_PER_DAY = 24 * 3600

AccessCode = Literal["minors_curfew", "minors_daily_limit"]


class AgeBand(BaseModel):
    """Daily budget for ages below `below_age` (and at or above the previous band's bound)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    below_age: int = Field(ge=1, le=MAX_AGE)
    daily_minutes: int = Field(ge=1, le=24 * 60)


DEFAULT_BANDS = (
    AgeBand(below_age=8, daily_minutes=40),
    AgeBand(below_age=16, daily_minutes=60),
    AgeBand(below_age=18, daily_minutes=120),
)

# Item age ratings: the youngest band an item is rated for (data/labels/, recsys/datasets/labels.py).
AGE_RATINGS = (0, 8, 12, 16, 18)


class RatingBand(BaseModel):
    """Minors younger than `below_age` (and at or above the previous band's bound) see only
    items rated at most `max_rating` (0 = all ages, 8 = 8+, 12 = 12+, 16 = 16+; 18 = adults only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    below_age: int = Field(ge=1, le=MAX_AGE)
    max_rating: int = Field(ge=0, le=17)


# The 2024 minors-mode guideline's bands: under 8, 8-12, 12-16, 16-18.
DEFAULT_RATING_BANDS = (
    RatingBand(below_age=8, max_rating=0),
    RatingBand(below_age=12, max_rating=8),
    RatingBand(below_age=16, max_rating=12),
    RatingBand(below_age=18, max_rating=16),
)


class MinorsConfig(BaseModel):
    """Knobs of minors mode; the defaults are the 2024 guideline's.

    `unknown_age_daily_minutes` is the budget when the age is unknown (or not a minor's) but a
    guardian switched minor mode on: None means the strictest band (40 minutes by default), since
    the user may be of any minor age.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    adult_age: int = Field(default=18, ge=1, le=MAX_AGE)
    age_bands: tuple[AgeBand, ...] = DEFAULT_BANDS
    unknown_age_daily_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    curfew_start: time = time(22, 0)
    curfew_end: time = time(6, 0)  # may be earlier than curfew_start: the window wraps midnight
    time_zone: str = "Asia/Shanghai"  # IANA name; days, curfew and usage are counted in it
    personalized: bool = False  # minors get the non-personalized minor-safe lists
    activity_gap_cap_seconds: int = Field(default=300, ge=1, le=SECONDS_PER_DAY)
    activity_floor_seconds: int = Field(default=60, ge=0, le=SECONDS_PER_DAY)
    rating_bands: tuple[RatingBand, ...] = DEFAULT_RATING_BANDS
    rest_reminder_minutes: int = Field(default=30, ge=1, le=24 * 60)  # of continuous use

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time_zone: unknown IANA time zone {value!r} (e.g. 'Asia/Shanghai', 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("curfew_start", "curfew_end")
    @classmethod
    def _naive_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("curfew times are local wall-clock times in `time_zone`; give them without an offset")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MinorsConfig:
        if not self.age_bands:
            raise ValueError("age_bands: at least one band is required")
        bounds = [band.below_age for band in self.age_bands]
        if any(later <= earlier for earlier, later in zip(bounds, bounds[1:])):
            raise ValueError(f"age_bands: below_age must be strictly increasing, got {bounds}")
        if bounds[-1] != self.adult_age:
            raise ValueError(
                f"age_bands: the last band's below_age ({bounds[-1]}) must equal adult_age "
                f"({self.adult_age}) so that every minor age has a budget"
            )
        rating_bounds = [band.below_age for band in self.rating_bands]
        if not rating_bounds or rating_bounds[-1] != self.adult_age or any(
            later <= earlier for earlier, later in zip(rating_bounds, rating_bounds[1:])
        ):
            raise ValueError(
                f"rating_bands: below_age must be strictly increasing and end at adult_age ({self.adult_age}), "
                f"got {rating_bounds}"
            )
        if self.curfew_start == self.curfew_end:
            raise ValueError(
                f"curfew_start and curfew_end are both {self.curfew_start:%H:%M}: an empty or "
                "all-day curfew is ambiguous; give a window such as 22:00-06:00"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)  # ZoneInfo caches instances by key

    def daily_budget_minutes(self, age: int | None) -> int:
        """Budget of a minor of this age; None (or an adult age under guardian mode): the unknown band."""
        if age is not None:
            for band in self.age_bands:
                if age < band.below_age:
                    return band.daily_minutes
        if self.unknown_age_daily_minutes is not None:
            return self.unknown_age_daily_minutes
        return min(band.daily_minutes for band in self.age_bands)


    def max_age_rating(self, age: int | None) -> int:
        """The highest item age rating a minor of this age may be served; an unknown age (or an
        adult age under guardian mode) gets the strictest band: the user may be of any minor age."""
        if age is not None:
            for band in self.rating_bands:
                if age < band.below_age:
                    return band.max_rating
        return min(band.max_rating for band in self.rating_bands)


class UsageState(BaseModel):
    """A user's usage on one local day: the value serving stores between requests.
    `continuous_since` is the first activity of the current run of activities (each within
    `activity_gap_cap_seconds` of the previous one): the start of continuous use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    day: date
    last_activity: datetime
    seconds_used: float = Field(ge=0)
    continuous_since: datetime | None = None

    @field_validator("last_activity")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return require_aware(value, "last_activity")


class GuardianControls(BaseModel):
    """What a guardian set for their minor (2024 minors-mode guideline: guardian controls). Each
    field only makes the configured rule stricter: the daily limit is the lower of the two, the
    guardian's curfew applies in addition to the configured one, the content band is the narrower."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    curfew_start: time | None = None
    curfew_end: time | None = None
    max_age_rating: Literal[0, 8, 12, 16] | None = None

    @field_validator("max_age_rating", mode="before")
    @classmethod
    def _rating_as_text(cls, value: object) -> object:
        """A form sends "8": read ASCII digits as the number, as `daily_minutes` is read; anything
        else (other scripts' digits, "8.0", "NaN") is left for the literal check to refuse."""
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            return int(value.strip())
        return value

    @model_validator(mode="after")
    def _curfew_pair(self) -> GuardianControls:
        if (self.curfew_start is None) != (self.curfew_end is None):
            raise ValueError("curfew_start and curfew_end: give both (a window such as 21:00-07:00) or neither")
        for value in (self.curfew_start, self.curfew_end):
            if value is not None and value.tzinfo is not None:
                raise ValueError("curfew times are local wall-clock times in the minors time zone; give them without an offset")
            if value is not None and (value.second or value.microsecond):
                # whole minutes, as shown and as the form sets them: "21:00:00.000001-21:00" would be a
                # one-microsecond day displayed as "21:00-21:00"
                raise ValueError(f"curfew times are whole minutes (HH:MM), got {value.isoformat()}")
        if self.curfew_start is not None and self.curfew_start == self.curfew_end:
            raise ValueError(f"curfew_start and curfew_end are both {self.curfew_start:%H:%M}: give a window such as 21:00-07:00")
        return self


class AccessDecision(BaseModel):
    """Whether a request may be served; when not, why (a code and a sentence) and when to retry."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    code: AccessCode | None = None
    message: str = ""
    retry_after_seconds: int | None = None
    budget_minutes: int | None = None
    used_minutes: float | None = None
    continuous_minutes: float | None = None  # of the current continuous use, this request included
    rest_reminder: bool = False  # continuous use reached `rest_reminder_minutes`: remind the user to rest


def rest_reminder(decision: AccessDecision, continuous_since: datetime | None, now: datetime,
                  config: MinorsConfig) -> AccessDecision:
    """`decision` with the continuous use up to `now` and whether it calls for a rest reminder."""
    if not decision.allowed or continuous_since is None:
        return decision
    minutes = round(max(0.0, (now - continuous_since).total_seconds()) / 60.0, 1)
    return decision.model_copy(update={"continuous_minutes": minutes,
                                       "rest_reminder": minutes >= config.rest_reminder_minutes})


def require_aware(value: datetime, name: str) -> datetime:
    """Return `value` when it carries a time zone; raise ValueError naming `name` otherwise."""
    if not isinstance(value, datetime):
        raise ValueError(f"{name}: expected a timezone-aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name}: timezone-aware datetime required, got naive {value.isoformat()} "
            "(e.g. datetime.now(timezone.utc))"
        )
    return value


def _check_age(age: int | None) -> None:
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= MAX_AGE):
        raise ValueError(f"age: expected an integer in 0..{MAX_AGE} or None, got {age!r}")


def is_minor(age: int | None, minor_mode: bool | None, config: MinorsConfig) -> bool:
    """A user is a minor when their age is below `adult_age` or a guardian switched minor mode on."""
    _check_age(age)
    return (age is not None and age < config.adult_age) or minor_mode is True


def max_age_rating(age: int | None, minor_mode: bool | None, config: MinorsConfig,
                   controls: GuardianControls | None = None) -> int | None:
    """The highest item age rating this user may be served: None (no limit) for adults; a
    guardian's narrower band wins."""
    if not is_minor(age, minor_mode, config):
        return None
    rating = config.max_age_rating(age if age is not None and age < config.adult_age else None)
    if controls is not None and controls.max_age_rating is not None:
        rating = min(rating, controls.max_age_rating)
    return rating


def local_day(now: datetime, config: MinorsConfig) -> date:
    return require_aware(now, "now").astimezone(config.zone).date()


def add_activity(state: UsageState | None, now: datetime, config: MinorsConfig) -> UsageState:
    """Count one request or event at `now` into the day's usage (the rule in the module docstring)."""
    today = local_day(now, config)
    floor = float(config.activity_floor_seconds)
    if state is None or state.day < today:
        return UsageState(day=today, last_activity=now, seconds_used=floor, continuous_since=now)
    if state.day > today:  # a late event from a day already closed: it cannot change today's count
        return state
    gap = (now - state.last_activity).total_seconds()
    if gap <= 0:  # out of order or simultaneous: already covered by the later activity
        return state
    if gap <= config.activity_gap_cap_seconds:
        return UsageState(day=today, last_activity=now, seconds_used=state.seconds_used + gap,
                          continuous_since=state.continuous_since or state.last_activity)
    return UsageState(day=today, last_activity=now, seconds_used=state.seconds_used + floor, continuous_since=now)


def curfews(config: MinorsConfig, controls: GuardianControls | None = None) -> list[tuple[time, time]]:
    """The curfew windows in force: the configured one, and the guardian's when set."""
    windows = [(config.curfew_start, config.curfew_end)]
    if controls is not None and controls.curfew_start is not None and controls.curfew_end is not None:
        windows.append((controls.curfew_start, controls.curfew_end))
    return windows


def _in_window(local: time, window: tuple[time, time]) -> bool:
    start, end = window
    return start <= local < end if start < end else (local >= start or local < end)


def curfews_leave_time(config: MinorsConfig, controls: GuardianControls | None) -> bool:
    """Whether the curfews in force leave some time of the day open. Free time, if any, starts
    where a window ends, so the day is fully covered exactly when every window's end falls
    inside another window. (A guardian who wants no use at all sets a small daily limit.)"""
    windows = curfews(config, controls)
    return any(not any(_in_window(end, w) for w in windows) for _, end in windows)


def in_curfew(now: datetime, config: MinorsConfig, window: tuple[time, time] | None = None) -> bool:
    """True when the local wall-clock time of `now` falls in [start, end) of `window` (default:
    the configured curfew_start, curfew_end)."""
    local = require_aware(now, "now").astimezone(config.zone).time().replace(tzinfo=None)
    return _in_window(local, window or (config.curfew_start, config.curfew_end))  # a window may wrap midnight


def _local_at(day: date, wall: time, config: MinorsConfig) -> datetime:
    return datetime.combine(day, wall, tzinfo=config.zone)


def _curfew_ends_after(now: datetime, config: MinorsConfig, windows: list[tuple[time, time]] | None = None) -> datetime:
    """The first moment after `now` (now being inside a curfew) outside every window."""
    windows = windows or curfews(config)
    moment = now
    for _ in range(2 * len(windows)):  # windows chain at most once each way
        inside = [w for w in windows if in_curfew(moment, config, w)]
        if not inside:
            break
        local = moment.astimezone(config.zone)
        ends = []
        for _, end in inside:
            candidate = _local_at(local.date(), end, config)
            if candidate.astimezone(timezone.utc) <= moment.astimezone(timezone.utc):
                candidate = _local_at(local.date() + timedelta(days=1), end, config)
            ends.append(candidate)
        moment = max(ends, key=lambda c: c.astimezone(timezone.utc))
    return moment


def _seconds_until(later: datetime, now: datetime) -> int:
    # Aware datetimes sharing a tzinfo subtract as wall-clock times; UTC makes DST days exact.
    delta = later.astimezone(timezone.utc) - now.astimezone(timezone.utc)
    return max(1, math.ceil(delta.total_seconds()))


def _resume_sentence(resume: datetime, config: MinorsConfig) -> str:
    return f"recommendations for minors resume at {resume.astimezone(config.zone):%H:%M} ({config.time_zone})"


def check_access(
    now: datetime,
    age: int | None,
    minor_mode: bool | None,
    usage: UsageState | None,
    config: MinorsConfig,
    controls: GuardianControls | None = None,
) -> AccessDecision:
    """Decide whether a request at `now` may be served: adults always; minors outside the curfew
    (and the guardian's) and while the day's usage is below their budget (the band's, or the
    guardian's when lower). `usage` is the state before this request.
    """
    require_aware(now, "now")
    if not is_minor(age, minor_mode, config):
        return AccessDecision(allowed=True)
    minor_age = age if age is not None and age < config.adult_age else None
    budget = config.daily_budget_minutes(minor_age)
    if controls is not None and controls.daily_minutes is not None:
        budget = min(budget, controls.daily_minutes)
    today = local_day(now, config)
    used_seconds = usage.seconds_used if usage is not None and usage.day == today else 0.0
    used_minutes = round(used_seconds / 60.0, 1)
    windows = curfews(config, controls)

    if any(in_curfew(now, config, w) for w in windows):
        resume = _curfew_ends_after(now, config, windows)
        return AccessDecision(
            allowed=False,
            code="minors_curfew",
            message=f"Rest time: {_resume_sentence(resume, config)}",
            retry_after_seconds=_seconds_until(resume, now),
            budget_minutes=budget,
            used_minutes=used_minutes,
        )
    if used_seconds >= budget * 60:
        resume = _local_at(today + timedelta(days=1), time(0, 0), config)
        if any(in_curfew(resume, config, w) for w in windows):
            resume = _curfew_ends_after(resume, config, windows)
        return AccessDecision(
            allowed=False,
            code="minors_daily_limit",
            message=(
                f"Daily limit reached: the {budget} minutes for today are used up; "
                f"{_resume_sentence(resume, config)}"
            ),
            retry_after_seconds=_seconds_until(resume, now),
            budget_minutes=budget,
            used_minutes=used_minutes,
        )
    return AccessDecision(allowed=True, budget_minutes=budget, used_minutes=used_minutes)


class UsageCharge(BaseModel):
    """One admitted activity of a minor, still to be counted into the day's usage by whoever serves
    the request (the server's one writer). `at_edge`: the day's usage was within one activity's worth
    (`activity_gap_cap_seconds` + `activity_floor_seconds`) of the budget when it was read, so concurrent
    requests could all be admitted on that one read: the activity must be counted before anything is
    served, and only while the usage is still below `budget_seconds` (else `refusal` is the answer)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    day: date
    moment: datetime
    budget_seconds: float
    at_edge: bool
    refusal: AccessDecision  # the daily-limit refusal to give when the budget was spent meanwhile


def usage_charge(user_id: str, now: datetime, age: int | None, minor_mode: bool | None, usage: UsageState | None,
                 decision: AccessDecision, config: MinorsConfig, controls: GuardianControls | None = None) -> UsageCharge:
    """The charge of an admitted request (`decision` allowed, `usage` the state it was decided on)."""
    today = local_day(now, config)
    budget_seconds = float(decision.budget_minutes or 0) * 60.0
    used = usage.seconds_used if usage is not None and usage.day == today else 0.0
    spent = UsageState(day=today, last_activity=now, seconds_used=max(used, budget_seconds))
    return UsageCharge(
        user_id=user_id, day=today, moment=now, budget_seconds=budget_seconds,
        at_edge=budget_seconds - used <= config.activity_gap_cap_seconds + config.activity_floor_seconds,
        refusal=check_access(now, age, minor_mode, spent, config, controls),
    )
