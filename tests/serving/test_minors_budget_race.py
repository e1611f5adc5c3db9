"""A minor at the edge of the daily budget (Art. 18 (draft 16)) cannot buy lists with concurrency.

The attacker's move: with one activity's worth of budget left, fire many requests at once across two
replicas, hoping each is admitted on the same read of the usage before any of them is counted. Two
app instances ("replicas") share one state database, each served by uvicorn on a real socket with
8 compute threads (a wide race window) and the same fixed clock (every request is the same moment, so
the usage rule counts one activity for all of them); 16 clients on their own connections start
together. Exactly one list may be served; the others are refused with `minors_daily_limit`, and the
day's usage is the budget edge plus one activity, counted once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest

from compliance import minors
from tests.conftest import MovableClock
from tests.web.conftest import ThreadedServer

DAYTIME = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai: outside the curfew
CLIENTS = 16


@pytest.fixture
def replicas(trained, make_settings, tmp_path):
    """Two app instances on one state database, each with its own log directory, on real sockets."""
    from compliance.logstore import LogConfig
    from serving.app import create_app

    clock = MovableClock(DAYTIME)
    servers = []
    try:
        for name in ("a", "b"):
            settings = make_settings(compute_threads=8, logs=LogConfig(dir=tmp_path / f"logs-{name}", fsync="group"))
            servers.append(ThreadedServer(create_app(settings, clock=clock, bundle_loader=lambda uri: trained)).start())
        yield servers, clock
    finally:
        for server in servers:
            server.stop()


def burst(urls: list[str], user_id: str) -> list[httpx.Response]:
    """CLIENTS requests released together by a barrier, alternately to each replica, each on its own connection."""
    barrier = threading.Barrier(CLIENTS, timeout=30)
    responses: list[httpx.Response | BaseException | None] = [None] * CLIENTS

    def one(n: int) -> None:
        try:
            with httpx.Client(base_url=urls[n % len(urls)], timeout=60) as client:
                barrier.wait()
                responses[n] = client.post("/v1/recommendations", json={"user_id": user_id, "surface": "feed"})
        except BaseException as exc:  # reported below, never swallowed
            responses[n] = exc

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a client did not finish in time"
    failed = [r for r in responses if not isinstance(r, httpx.Response)]
    assert not failed, failed
    return [r for r in responses if isinstance(r, httpx.Response)]


@pytest.mark.parametrize("last_activity_ago", [timedelta(hours=1), timedelta(seconds=0)])
def test_concurrent_requests_at_the_budget_edge_get_one_list_between_them(replicas, data, last_activity_ago):
    servers, clock = replicas
    store, config = servers[0].services.store, servers[0].services.settings.minors
    minor = data.users.filter(pl.col("age").is_between(12, 15))["user_id"].sort().to_list()[0]
    age = data.users.filter(pl.col("user_id") == minor)["age"][0]
    budget_s = config.daily_budget_minutes(age) * 60.0
    day = minors.local_day(DAYTIME, config)
    # one second of budget left: the next activity (the floor after a pause, or nothing at the same
    # moment) reaches the edge or leaves the minor just under it
    store.put_usage(minor, day, DAYTIME - last_activity_ago, budget_s - 1.0)

    responses = burst([s.url for s in servers], minor)
    codes = sorted(r.status_code for r in responses)
    refused = [r for r in responses if r.status_code == 403]
    assert all(r.json()["code"] == "minors_daily_limit" for r in refused), [r.text for r in refused]
    last, used = store.get_usage(minor, day)
    if last_activity_ago:  # after a pause the one admitted activity counts the floor: over the budget
        assert codes == [200] + [403] * (CLIENTS - 1), codes
        assert used == budget_s - 1.0 + config.activity_floor_seconds and last == DAYTIME
    else:  # the same moment as the last activity counts nothing: every request is within the budget
        assert codes == [200] * CLIENTS, codes
        assert used == budget_s - 1.0
    # the next moment is past the edge in both cases only once something was counted
    clock.now = DAYTIME + timedelta(seconds=2)
    after = burst([s.url for s in servers], minor)
    served_after = sum(r.status_code == 200 for r in after)
    assert served_after == (0 if last_activity_ago else 1), sorted(r.status_code for r in after)
