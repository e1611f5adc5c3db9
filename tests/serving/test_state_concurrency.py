"""Concurrent writers on the state database, as several workers are: threads, each with its own
engine (its own connections), started together at a barrier, on both backends (PostgreSQL is the
one where writers really interleave; SQLite serialises them). Exact counts, nothing lost."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from compliance import minors
from serving.state.db import make_engine
from serving.state.store import StateStore

WRITERS = 4
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


@pytest.fixture(scope="module")
def stores(state_url) -> list[StateStore]:
    """One store per writer, each on its own engine, as each worker has."""
    engines = [make_engine(state_url) for _ in range(WRITERS)]
    yield [StateStore(engine) for engine in engines]
    for engine in engines:
        engine.dispose()


def together(jobs: list[Callable[[], object]]) -> list:
    """Run the jobs on their own threads, released at once; their results in order."""
    barrier = threading.Barrier(len(jobs))

    def run(job):
        barrier.wait(timeout=30)
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result(timeout=120) for f in [pool.submit(run, job) for job in jobs]]


def test_concurrent_posts_of_the_same_events_count_each_once(stores):
    """4 writers post the same 50 new ids (each in its own order) 20 times: the counts they
    return add up to exactly 50 each round, and the table holds each id once."""
    total = 0
    for round_ in range(20):
        rows = [{"event_id": f"ev-{round_}-{i}", "user_id": f"u{i % 5}", "item_id": f"i{i}", "type": "click",
                 "ts": T0, "received_at": T0} for i in range(50)]
        orders = [random.Random(round_ * WRITERS + w).sample(rows, len(rows)) for w in range(WRITERS)]
        counts = together([lambda s=s, o=o: s.add_events(o) for s, o in zip(stores, orders)])
        assert sum(counts) == 50, (round_, counts)
        total += 50
    assert len(stores[0].events_since(T0 - timedelta(days=1))) == total


def test_writers_of_shared_ids_in_opposite_orders_do_not_deadlock(stores, state_url):
    """Two posts share ids x, y, z in opposite orders while a third transaction holds an
    uncommitted z, so both are mid-insert when it commits. Inserted in the order given, each would
    hold one id the other waits for (PostgreSQL: `deadlock detected`, every time); inserted in id
    order, the second waits for the first and then skips what it inserted."""
    if not state_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: rows are never locked one by one")
    import time

    from sqlalchemy import insert, text

    from serving.state import db

    def row(event_id: str) -> dict:
        return {"event_id": event_id, "user_id": "u", "item_id": "i", "type": "view", "ts": T0, "received_at": T0}

    for round_ in range(3):
        x, y, z = (f"order-{round_}-{name}" for name in "xyz")
        holder = stores[3].engine.connect()
        holder.execute(insert(db.events).values(**row(z)))  # uncommitted: z is locked
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(stores[0].add_events, [row(x), row(z), row(y)])
            second = pool.submit(stores[1].add_events, [row(y), row(z), row(x)])
            deadline = time.monotonic() + 20
            with stores[2].engine.connect() as probe:  # wait until both posts are waiting on a lock
                while probe.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND wait_event_type = 'Lock'")).scalar() < 2:
                    probe.rollback()
                    assert time.monotonic() < deadline, "the two posts never both waited"
                    time.sleep(0.01)
            holder.commit()
            holder.close()
            counts = [first.result(timeout=30), second.result(timeout=30)]
        assert sorted(counts) == [0, 2], counts  # x and y once between them; z was the holder's


def test_concurrent_activity_of_one_minor_loses_no_time(stores):
    """Activity of one minor on 4 workers at once, gaps within the cap: whatever order the
    database applies it in, the day ends at the latest moment with floor + (latest - first) seconds
    used (each gap counted once: a lost update would drop one)."""
    config = minors.MinorsConfig()
    cap, floor = config.activity_gap_cap_seconds, config.activity_floor_seconds
    for round_ in range(10):
        user, day = f"kid-{round_}", minors.local_day(T0, config)
        stores[0].add_usage(user, day, T0, cap, floor)
        # 4 writers x 25 activities, every 0.25 s (exact in binary): all gaps within the cap
        moments = [[T0 + timedelta(seconds=0.25 * (k * WRITERS + w + 1)) for k in range(25)] for w in range(WRITERS)]
        together([lambda s=s, ms=ms: [s.add_usage(user, day, m, cap, floor) for m in ms] for s, ms in zip(stores, moments)])
        latest = max(max(ms) for ms in moments)
        assert stores[0].get_usage(user, day) == (latest, floor + (latest - T0).total_seconds()), round_


def test_concurrent_activity_beyond_the_cap_is_a_serial_history(stores):
    """Activities more than the cap apart each add the floor when they are the latest so far: the
    states the writers got back must chain into one serial history of `minors.add_activity`,
    ending at the stored state (two writers that read the same state would both report +floor
    from it, which no serial order gives)."""
    config = minors.MinorsConfig()
    cap, floor = config.activity_gap_cap_seconds, config.activity_floor_seconds
    for round_ in range(10):
        user, day = f"kid-far-{round_}", minors.local_day(T0, config)
        start = stores[0].add_usage(user, day, T0, cap, floor)
        moments = [[T0 + timedelta(seconds=(cap + 1) * (k * WRITERS + w + 1) / 10) for k in range(10)] for w in range(WRITERS)]
        # (cap + 1) / 10 apart within a writer's list, but writers interleave: gaps between any two
        # activities of the day are multiples of (cap + 1) / 10; both branches of the rule are taken.
        results = together([lambda s=s, ms=ms: [(m, s.add_usage(user, day, m, cap, floor)) for m in ms]
                            for s, ms in zip(stores, moments)])
        outcomes = [item for writer in results for item in writer]
        # Replay: order by the state each call left (usage, then last activity); among equal states,
        # the call that made it (its moment is the last activity) first.
        outcomes.sort(key=lambda o: (o[1][1], o[1][0], o[0] != o[1][0]))
        state = minors.UsageState(day=day, last_activity=start[0], seconds_used=start[1])
        for moment, (last, used) in outcomes:
            expected = minors.add_activity(state, moment, config)
            assert (expected.last_activity, expected.seconds_used) == (last, used), (round_, moment, state)
            state = expected
        assert stores[0].get_usage(user, day) == (state.last_activity, state.seconds_used)


def test_concurrent_charges_at_the_budget_edge_admit_only_within_the_budget(stores):
    """4 workers charge a minor's activity at the budget edge at once (`charge_usage`, what the
    server does before releasing a list there): the database serialises them, so only the
    charges it counts while the usage is below the budget succeed, whatever the order. With one
    second left after a pause, exactly one (it adds the floor); moments 2 s apart within the cap:
    the budget is crossed once and every charge counted after that is refused and writes nothing."""
    config = minors.MinorsConfig()
    cap, floor = config.activity_gap_cap_seconds, config.activity_floor_seconds
    budget = 3600.0
    for round_ in range(5):
        user, day = f"kid-edge-{round_}", minors.local_day(T0, config)
        stores[0].put_usage(user, day, T0 - timedelta(hours=1), budget - 1.0)
        results = together([lambda s=s: s.charge_usage(user, day, T0, cap, floor, budget) for s in stores])
        assert sum(r is not None for r in results) == 1, (round_, results)
        assert stores[0].get_usage(user, day) == (T0, budget - 1.0 + floor)
        # within the cap: each charge adds its gap; 8 s left, 2 s apart, 4 writers x 3 moments
        user = f"kid-edge-gap-{round_}"
        stores[0].put_usage(user, day, T0, budget - 8.0)
        moments = [[T0 + timedelta(seconds=2 * (k * WRITERS + w + 1)) for k in range(3)] for w in range(WRITERS)]
        results = together([lambda s=s, ms=ms: [(m, s.charge_usage(user, day, m, cap, floor, budget)) for m in ms]
                            for s, ms in zip(stores, moments)])
        counted = sorted((got for writer in results for _, got in writer if got is not None), key=lambda g: g[1])
        # every counted charge started below the budget: one state at or above it, the one that crossed it
        assert len({state for state in counted if state[1] >= budget}) == 1, counted
        final = stores[0].get_usage(user, day)
        assert final == counted[-1] and final[1] >= budget, (final, counted)
        # the usage is the rule's: 8 s short plus the time up to the latest moment counted
        assert final[1] == budget - 8.0 + (final[0] - T0).total_seconds()


def test_two_writers_on_one_session_keep_every_page(stores):
    """Two workers serve pages of one session at once (two tabs): every page is kept once, the
    session reads back in (page, insertion) order, readers never see an error meanwhile."""
    user, surface, session = "u-two-tabs", "home", "sess-1"

    def writer(store: StateStore, tab: int):
        for number in range(40):
            store.record_page(request_id=f"{tab}-{number}", user_id=user, surface=surface, session_id=session, page=number,
                              items=[tab * 1000 + number], categories=[tab], contents=[number], now=T0)
        return 40

    def reader(store: StateStore):
        seen = 0
        for _ in range(40):
            seen = max(seen, len(store.session_pages(user, surface, session, before_page=10_000)))
            store.latest_session(user, surface)
        return seen

    together([lambda: writer(stores[0], 1), lambda: writer(stores[1], 2), lambda: reader(stores[2])])
    pages = stores[3].session_pages(user, surface, session, before_page=10_000)
    assert len(pages) == 80
    assert [p.page for p in pages] == sorted(p.page for p in pages)
    assert sorted(p.items[0] for p in pages) == sorted([1000 + n for n in range(40)] + [2000 + n for n in range(40)])
    assert stores[3].latest_session(user, surface) == session
    assert len(stores[3].recent_items(user, 1_000)) == 80


def test_concurrent_interventions_bump_the_version_exactly(stores):
    """4 writers create 10 interventions each, then all 4 revoke all 40 at once (each in its own
    order): every create and every effective revoke bumps the version once, each intervention is
    revoked by exactly one writer."""
    before = stores[0].version("interventions")

    def create(store: StateStore, w: int):
        return [store.add_intervention({"kind": "block", "item_id": f"i{w}-{k}", "operator": f"op{w}", "reason": "r",
                                        "created_at": T0})["id"] for k in range(10)]

    ids = [i for created in together([lambda s=s, w=w: create(s, w) for w, s in enumerate(stores)]) for i in created]
    assert len(set(ids)) == 40 and stores[0].version("interventions") == before + 40

    def revoke(store: StateStore, w: int):
        for intervention_id in random.Random(w).sample(ids, len(ids)):
            store.revoke_intervention(intervention_id, f"revoker{w}", T0 + timedelta(minutes=w))

    together([lambda s=s, w=w: revoke(s, w) for w, s in enumerate(stores)])
    assert stores[0].version("interventions") == before + 80
    rows = [r for r in stores[0].list_interventions(include_inactive=True) if r["id"] in set(ids)]
    assert len(rows) == 40 and all(r["revoked_by"] and r["revoked_at"] for r in rows)
    assert all(r["revoked_at"] == T0 + timedelta(minutes=int(r["revoked_by"][-1])) for r in rows)  # one writer's both values


def test_concurrent_feature_entries_and_settings(stores):
    """The same feature entries added by 4 writers: each added once, the version bumped once per
    entry. Two writers changing different settings of the same users: both changes hold."""
    before = stores[0].version("features")
    added = together([lambda s=s: [s.add_feature_entry(f"f{k}", {"id": f"f{k}", "pattern": "x"}, T0) for k in range(15)]
                      for s in stores])
    assert [sum(column) for column in zip(*added)] == [1] * 15
    assert stores[0].version("features") == before + 15

    users = [f"settings-{k}" for k in range(30)]
    together([
        lambda: [stores[0].put_settings(u, T0, personalization=False, minor_mode=None) for u in users],
        lambda: [stores[1].put_settings(u, T0, personalization=None, minor_mode=True) for u in users],
    ])
    assert all((s.personalization, s.minor_mode) == (False, True) for s in map(stores[2].load_user, users))
