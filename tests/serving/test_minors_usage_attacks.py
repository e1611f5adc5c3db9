"""A minor trying to stretch the daily budget (Art. 18 (draft 16)) with moves other than concurrency
(tests/serving/test_minors_budget_race.py has the burst), over a real socket.

- A future event time: `POST /v1/events` accepts a `ts` up to `MAX_CLOCK_SKEW` ahead of the server
  clock (clients' clocks drift). Were a minor's event counted at its claimed time, its moment
  would become the day's last activity, and every list requested before that moment would count
  nothing (an activity not after the last one "changes nothing"): with a gap cap shorter than the
  skew, one event per few minutes would cost the floor instead of the minutes used. An activity is
  counted at most at the server's clock.
- A count queued after the usage thread stopped (a response finishing during shutdown) is written
  at once, never left on a thread the process exit kills.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest

from compliance import minors
from serving.routes.content import MAX_CLOCK_SKEW
from tests.conftest import MovableClock
from tests.web.conftest import ThreadedServer

DAYTIME = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai: outside the curfew
GAP_CAP_S = 60  # shorter than the events' clock skew: the configuration the attack needs
FLOOR_S = 10
STEP_S = 30  # the minor asks for a list every 30 s


@pytest.fixture
def server(trained, make_settings):
    from serving.app import create_app

    clock = MovableClock(DAYTIME)
    settings = make_settings(minors=minors.MinorsConfig(activity_gap_cap_seconds=GAP_CAP_S, activity_floor_seconds=FLOOR_S))
    site = ThreadedServer(create_app(settings, clock=clock, bundle_loader=lambda uri: trained)).start()
    try:
        yield site, clock
    finally:
        site.stop()


@pytest.fixture
def minor(data) -> str:
    return data.users.filter(pl.col("age").is_between(12, 15))["user_id"].sort().to_list()[0]


def used_seconds(site, user_id: str) -> float:
    services = site.services
    services.gate.usage.settle(user_id)
    stored = services.store.usage_state(user_id, minors.local_day(DAYTIME, services.settings.minors))
    assert stored is not None
    return stored[1]


def test_a_future_event_time_does_not_make_the_next_lists_free(server, minor, trained):
    site, clock = server
    item = str(trained[0].items["item_id"][0])
    lists = round(MAX_CLOCK_SKEW.total_seconds() // STEP_S) - 1
    with httpx.Client(base_url=site.url, timeout=60) as http:
        assert http.post("/v1/recommendations", json={"user_id": minor, "surface": "feed"}).status_code == 200
        ahead = clock() + MAX_CLOCK_SKEW - timedelta(seconds=5)  # accepted: within the skew
        event = {"event_id": "ahead-1", "user_id": minor, "item_id": item, "type": "click", "ts": ahead.isoformat()}
        assert http.post("/v1/events", json={"events": [event]}).status_code == 200
        for _ in range(lists):
            clock.now += timedelta(seconds=STEP_S)
            response = http.post("/v1/recommendations", json={"user_id": minor, "surface": "feed"})
            assert response.status_code == 200, response.text
    # an honest client: the first list's floor, then each list the 30 s since the one before
    honest = FLOOR_S + lists * STEP_S
    assert used_seconds(site, minor) >= honest, "lists requested before a future event's time were not counted"


def test_a_count_queued_after_the_usage_thread_stopped_is_written(trained, make_settings, minor):
    from serving.app import create_app

    clock = MovableClock(DAYTIME)
    site = ThreadedServer(create_app(make_settings(), clock=clock, bundle_loader=lambda uri: trained)).start()
    try:
        services = site.services
        config = services.settings.minors
        usage = services.gate.usage
        usage.charge_later(minors.UsageCharge(user_id=minor, day=minors.local_day(DAYTIME, config), moment=DAYTIME,
                                              budget_seconds=3600, at_edge=False,
                                              refusal=minors.AccessDecision(allowed=False)))
        usage.close()  # what the app's shutdown does
        late = DAYTIME + timedelta(seconds=30)
        usage.charge_later(minors.UsageCharge(user_id=minor, day=minors.local_day(late, config), moment=late,
                                              budget_seconds=3600, at_edge=False,
                                              refusal=minors.AccessDecision(allowed=False)))
        stored = services.store.usage_state(minor, minors.local_day(DAYTIME, config))
        assert stored is not None and stored[0] == late, "a count queued after shutdown was left unwritten"
    finally:
        site.stop()
