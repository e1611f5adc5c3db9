"""A hot list you can verify, over a real socket (the 2024-25 hot-list campaign; Art. 11, Art. 14 (draft 13), Art. 28 (draft 24)): a
burst of genuine and fake events goes in through POST /v1/events, the hot list is fetched 100 times
with events, pins and a moving clock in between, and `recsys trending verify --all` recomputes every
snapshot from the stored events and finds each equal to what was served; a changed stored event is
named, one line per mismatch."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import threading
from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest
import uvicorn

from recsys.schema import Dataset
from tests.conftest import ADMIN, RECSYS, MovableClock, free_port

pytestmark = pytest.mark.e2e


class ThreadServer:
    """The app on 127.0.0.1:<free port>, served by uvicorn in a thread (so the test can move its clock)."""

    def __init__(self, app):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        started = threading.Event()
        for _ in range(600):  # bounded: 60 s
            if self.server.started:
                started.set()
                break
            started.wait(0.1)
        assert started.is_set(), "server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run_verify(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", "RECSYS_LOG_DIR": str(tmp_path / "logs")}
    return subprocess.run([RECSYS, "trending", "verify", *args], env=env, capture_output=True, text=True, timeout=600)


def test_a_hundred_served_hot_lists_recompute_exactly_after_a_mixed_burst(trained, make_settings, tmp_path, synthetic_dir):
    from serving.app import create_app

    rng = random.Random(14)
    data = Dataset.load(synthetic_dir)
    clock = MovableClock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # 10:00 in Asia/Shanghai: the minor is outside curfew
    app = create_app(make_settings(), clock=clock, bundle_loader=lambda uri: trained)
    servable = data.items.filter(~pl.col("flagged"))["item_id"].to_list()
    popular = data.interactions.group_by("item_id").len().sort("len", descending=True)["item_id"].to_list()
    hot = [i for i in popular if i in set(servable)][:30]
    targets = sorted(set(servable) - set(popular[:500]))[:3]  # obscure items the fake accounts push
    # adults under the elderly-mode age: one audience band (minors and elderly users have their own snapshots)
    adults = data.users.filter(pl.col("age").is_between(18, 59))["user_id"].sort().to_list()
    minor = data.users.filter(pl.col("age") < 16)["user_id"].sort().to_list()[0]
    counter = iter(range(10**9))

    def burst(n_genuine: int, n_fake: int) -> list[dict]:
        now = clock()
        events = [{"event_id": f"g{next(counter)}", "user_id": rng.choice(adults), "item_id": rng.choice(hot),
                   "type": rng.choice(["click", "like", "share", "impression"]),
                   "ts": (now - timedelta(seconds=rng.uniform(0, 6 * 3600))).isoformat()} for _ in range(n_genuine)]
        fake_target = rng.choice(targets)
        for _ in range(n_fake):  # fresh accounts, no history, one item (sometimes a decoy), resent ids
            user = f"fake{rng.randrange(400)}"
            event_id = f"f{next(counter)}" if rng.random() > 0.1 else "f0"
            item = fake_target if rng.random() < 0.8 else rng.choice(hot)
            events.append({"event_id": event_id, "user_id": user, "item_id": item, "type": rng.choice(["like", "share"]),
                           "ts": (now - timedelta(seconds=rng.uniform(0, 1800))).isoformat()})
        return events

    served: dict[str, list[list[str]]] = {}
    pins: list[int] = []
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=60, headers=ADMIN) as client:
        def post(events: list[dict]) -> None:
            response = client.post("/v1/events", json={"events": events})
            assert response.status_code == 200, response.text

        def fetch(user: str, k: int) -> dict:
            response = client.get("/v1/trending", params={"user_id": user, "k": k})
            assert response.status_code == 200, response.text
            body = response.json()
            served.setdefault(body["snapshot_id"], []).append([i["item_id"] for i in body["items"]])
            return body

        post(burst(600, 400))
        rounds = 0
        while len(served) < 100:
            rounds += 1
            post(burst(rng.randrange(20, 120), rng.randrange(0, 150)))
            manual_change = rounds % 17 == 5
            if manual_change:  # pin, later revoke: a new snapshot at the same instant as the last one
                if pins:
                    assert client.delete(f"/v1/admin/interventions/{pins.pop()}").status_code == 200
                else:
                    response = client.post("/v1/admin/interventions", json={
                        "kind": "pin", "surface": "trending", "item_id": rng.choice(hot), "position": 2,
                        "reason": "editorial: public-interest notice"})
                    assert response.status_code == 201, response.text
                    pins.append(response.json()["id"])
            if not manual_change:  # events just posted were received at the instant of the last snapshot: not in it
                clock.now += timedelta(seconds=31)  # past the trending cache: a new snapshot
            body = fetch(rng.choice(adults), rng.choice([5, 10, 20, 50]))
            if rounds % 10 == 0:  # the cached list is the same snapshot
                assert fetch(rng.choice(adults), 10)["snapshot_id"] == body["snapshot_id"]
            if rounds % 25 == 0:  # a minor's band is its own snapshot
                assert fetch(minor, 10)["snapshot_id"] != body["snapshot_id"]
        lists = sum(len(v) for v in served.values())
        assert lists > len(served) == 100
        assert not any(t in ids[:3] for lists_ in served.values() for ids in lists_ for t in targets)
        published = client.get("/v1/transparency").json()["hot_list"]
        assert "recsys trending verify" in " ".join(published["verify"]["commands"])
        assert {r["rule"] for r in published["rules"]} >= {"no_history", "cluster", "untrusted_cap", "not_minor_safe"}

    result = run_verify(tmp_path, "--all", "--quiet")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"100 snapshots, {lists} served lists: every snapshot reproduces" in result.stdout

    # a stored event changed after the fact is found, and named on one line per mismatch
    snapshot_id = list(served)[-1]
    with sqlite3.connect(tmp_path / "state.db") as db:
        changed = db.execute("UPDATE events SET type = 'share' WHERE event_id = "
                             "(SELECT event_id FROM events WHERE type <> 'share' ORDER BY received_at DESC LIMIT 1)").rowcount
    assert changed == 1
    one = run_verify(tmp_path, snapshot_id)
    assert one.returncode == 1, one.stdout + one.stderr
    lines = [line for line in one.stdout.splitlines() if line.startswith(snapshot_id)]
    assert lines and any("events:" in line and "digest differs" in line for line in lines), one.stdout
    assert one.stdout.strip().splitlines()[-1].startswith("1 snapshots,")
