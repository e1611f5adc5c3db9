"""Minors mode (Art. 18 (draft 16)): curfew, usage clock and daily budgets, checked as properties."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from compliance.minors import (
    AgeBand,
    MinorsConfig,
    UsageState,
    add_activity,
    check_access,
    in_curfew,
    is_minor,
)

DEFAULT = MinorsConfig()
SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York")

utc_moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)).map(
    lambda naive: naive.replace(tzinfo=timezone.utc)
)
minute_times = st.builds(time, st.integers(0, 23), st.integers(0, 59))


def _wall_seconds(moment: datetime) -> float:
    return moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6


def _expected_curfew(now: datetime, config: MinorsConfig) -> bool:
    """Independent oracle: the wall-clock offset from the start is shorter than the window length."""
    local = now.astimezone(config.zone)
    start, end = _wall_seconds(config.curfew_start), _wall_seconds(config.curfew_end)
    return (_wall_seconds(local) - start) % 86400 < (end - start) % 86400


@given(now=utc_moments, start=minute_times, end=minute_times)
def test_curfew_matches_wrapped_window_for_any_time(now, start, end):
    if start == end:
        return
    config = MinorsConfig(curfew_start=start, curfew_end=end)
    assert in_curfew(now, config) == _expected_curfew(now, config)


@given(now=utc_moments, zone=st.sampled_from(ZONES))
def test_default_curfew_is_22_to_06_local(now, zone):
    config = MinorsConfig(time_zone=zone)
    local_hour = now.astimezone(ZoneInfo(zone)).hour
    assert in_curfew(now, config) == (local_hour >= 22 or local_hour < 6)


@given(now=utc_moments, zone=st.sampled_from(ZONES), age=st.integers(0, 17))
def test_curfew_blocks_minors_until_exactly_the_end(now, zone, age):
    config = MinorsConfig(time_zone=zone)
    decision = check_access(now, age, None, None, config)
    if not in_curfew(now, config):
        assert decision.allowed
        return
    assert not decision.allowed and decision.code == "minors_curfew"
    resume = now + timedelta(seconds=decision.retry_after_seconds)
    assert not in_curfew(resume, config)
    assert time(6, 0) <= resume.astimezone(config.zone).time() < time(6, 0, 1)
    assert decision.retry_after_seconds <= 9 * 3600  # 8 h of wall clock; 9 h of real time on a DST fall-back night
    assert f"resume at 06:00 ({zone})" in decision.message


@given(now=utc_moments, age=st.one_of(st.none(), st.integers(18, 150)))
def test_adults_are_always_allowed(now, age):
    decision = check_access(now, age, False, UsageState(day=date(2000, 1, 1), last_activity=now, seconds_used=1e9), DEFAULT)
    assert decision.allowed and decision.code is None


@given(now=utc_moments, age=st.integers(0, 17))
def test_daily_limit_resumes_after_midnight_and_curfew(now, age):
    if in_curfew(now, DEFAULT):
        return
    today = now.astimezone(SHANGHAI).date()
    budget = DEFAULT.daily_budget_minutes(age)
    usage = UsageState(day=today, last_activity=now, seconds_used=budget * 60)
    decision = check_access(now, age, None, usage, DEFAULT)
    assert not decision.allowed and decision.code == "minors_daily_limit"
    assert decision.budget_minutes == budget and decision.used_minutes == budget
    resume = (now + timedelta(seconds=decision.retry_after_seconds)).astimezone(SHANGHAI)
    assert resume.date() == today + timedelta(days=1)
    assert time(6, 0) <= resume.time() < time(6, 0, 1)


day_offsets = st.lists(st.floats(0, 86399.999, allow_nan=False), min_size=1, max_size=40)


@given(offsets=day_offsets, zone=st.sampled_from(ZONES), cap=st.integers(1, 900), floor=st.integers(0, 300))
def test_usage_never_decreases_and_is_bounded_within_a_day(offsets, zone, cap, floor):
    config = MinorsConfig(time_zone=zone, activity_gap_cap_seconds=cap, activity_floor_seconds=floor)
    midnight = datetime(2024, 6, 3, tzinfo=ZoneInfo(zone))  # no DST change on that day in these zones
    state, seen = None, []
    for offset in offsets:  # arbitrary order: events may arrive late
        now = midnight + timedelta(seconds=offset)
        previous = state.seconds_used if state else 0.0
        state = add_activity(state, now, config)
        seen.append(now)
        elapsed = (max(seen) - min(seen)).total_seconds()
        assert state.day == date(2024, 6, 3)
        assert state.seconds_used >= previous
        assert state.seconds_used <= elapsed + floor * len(seen) + 1e-6


@given(offsets=day_offsets, next_day_offset=st.floats(0, 86399.999, allow_nan=False))
def test_usage_resets_on_the_next_local_day(offsets, next_day_offset):
    midnight = datetime(2024, 6, 3, tzinfo=SHANGHAI)
    state = None
    for offset in offsets:
        state = add_activity(state, midnight + timedelta(seconds=offset), DEFAULT)
    tomorrow = midnight + timedelta(days=1, seconds=next_day_offset)
    fresh = add_activity(state, tomorrow, DEFAULT)
    assert fresh.day == date(2024, 6, 4)
    assert fresh.seconds_used == DEFAULT.activity_floor_seconds
    # a late event of the day before cannot touch the new day's count
    assert add_activity(fresh, midnight + timedelta(seconds=offsets[0]), DEFAULT) == fresh


def test_usage_rule_adds_short_gaps_and_floors_long_ones():
    start = datetime(2024, 6, 3, 15, 0, tzinfo=SHANGHAI)
    state = add_activity(None, start, DEFAULT)
    assert state.seconds_used == 60  # first activity of the day: the floor
    state = add_activity(state, start + timedelta(seconds=200), DEFAULT)
    assert state.seconds_used == 260  # gap 200 s <= cap 300 s: counted in full
    state = add_activity(state, start + timedelta(seconds=200 + 3600), DEFAULT)
    assert state.seconds_used == 320  # an hour's pause: only the floor
    # the local day is Shanghai's: 16:30 UTC is 00:30 on the next Shanghai day
    late = datetime(2024, 6, 3, 16, 30, tzinfo=timezone.utc)
    assert add_activity(state, late, DEFAULT).day == date(2024, 6, 4)


def test_budgets_by_age_band_and_unknown_age():
    assert [DEFAULT.daily_budget_minutes(age) for age in (0, 7, 8, 15, 16, 17)] == [40, 40, 60, 60, 120, 120]
    assert DEFAULT.daily_budget_minutes(None) == 40  # the strictest band
    now = datetime(2024, 6, 3, 12, 0, tzinfo=SHANGHAI)
    assert check_access(now, None, True, None, DEFAULT).budget_minutes == 40
    assert check_access(now, 35, True, None, DEFAULT).budget_minutes == 40  # guardian mode on an adult account
    assert check_access(now, 12, None, None, DEFAULT).budget_minutes == 60
    assert MinorsConfig(unknown_age_daily_minutes=30).daily_budget_minutes(None) == 30


def test_is_minor():
    assert is_minor(17, None, DEFAULT) and is_minor(17, False, DEFAULT)
    assert is_minor(None, True, DEFAULT) and is_minor(40, True, DEFAULT)
    assert not is_minor(18, None, DEFAULT) and not is_minor(None, None, DEFAULT) and not is_minor(None, False, DEFAULT)
    with pytest.raises(ValueError, match="age: expected an integer in 0..150"):
        is_minor(-1, None, DEFAULT)


def test_allowed_minor_sees_budget_and_usage_and_yesterday_does_not_count():
    now = datetime(2024, 6, 3, 12, 0, tzinfo=SHANGHAI)
    usage = UsageState(day=date(2024, 6, 3), last_activity=now, seconds_used=30 * 60)
    decision = check_access(now, 10, None, usage, DEFAULT)
    assert decision.allowed and decision.budget_minutes == 60 and decision.used_minutes == 30
    stale = UsageState(day=date(2024, 6, 2), last_activity=now - timedelta(days=1), seconds_used=10_000)
    assert check_access(now, 10, None, stale, DEFAULT).used_minutes == 0


def test_curfew_message_is_a_clear_sentence():
    decision = check_access(datetime(2024, 6, 3, 23, 0, tzinfo=SHANGHAI), 12, None, None, DEFAULT)
    assert decision.message == "Rest time: recommendations for minors resume at 06:00 (Asia/Shanghai)"
    assert decision.retry_after_seconds == 7 * 3600


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="now: timezone-aware datetime required"):
        check_access(datetime(2024, 6, 3, 12, 0), 12, None, None, DEFAULT)
    with pytest.raises(ValueError, match="now: timezone-aware datetime required"):
        add_activity(None, datetime(2024, 6, 3, 12, 0), DEFAULT)
    with pytest.raises(ValidationError, match="last_activity: timezone-aware"):
        UsageState(day=date(2024, 6, 3), last_activity=datetime(2024, 6, 3), seconds_used=0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "unknown IANA time zone 'Mars/Olympus'"),
        ({"curfew_start": "06:00"}, "an empty or all-day curfew is ambiguous"),
        (
            {"age_bands": [AgeBand(below_age=16, daily_minutes=60), AgeBand(below_age=8, daily_minutes=40)]},
            "strictly increasing",
        ),
        ({"age_bands": [AgeBand(below_age=16, daily_minutes=60)]}, "must equal adult_age"),
        ({"activity_gap_cap_seconds": 0}, "activity_gap_cap_seconds"),
        ({"curfew_strat": "21:00"}, "curfew_strat"),
    ],
)
def test_bad_config_names_the_field(fields, message):
    with pytest.raises(ValidationError, match=message):
        MinorsConfig(**fields)


def test_config_reads_strings_as_a_settings_file_would():
    config = MinorsConfig.model_validate({"curfew_start": "21:30", "curfew_end": "07:00", "time_zone": "UTC"})
    assert config.curfew_start == time(21, 30)
    assert in_curfew(datetime(2024, 1, 1, 6, 59, tzinfo=timezone.utc), config)
    assert not in_curfew(datetime(2024, 1, 1, 7, 0, tzinfo=timezone.utc), config)
    assert not MinorsConfig().personalized


@settings(max_examples=50)
@given(now=utc_moments)
def test_curfew_that_does_not_wrap(now):
    config = MinorsConfig(curfew_start="01:00", curfew_end="05:00", time_zone="UTC")
    assert in_curfew(now, config) == (1 <= now.hour < 5)
