"""Over a real socket: `recsys serve` with 2 uvicorn workers, driven with httpx."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter

import httpx
import polars as pl
import pytest

from compliance.logstore import LogConfig, lookup, verify
from recsys.schema import Dataset
from tests.conftest import RECSYS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def users(synthetic_dir) -> dict[str, list[str]]:
    data = Dataset.load(synthetic_dir)
    return {
        "adults": data.users.filter(pl.col("age") >= 18)["user_id"].sort().to_list(),
        "minors": data.users.filter(pl.col("age") < 18)["user_id"].sort().to_list(),
    }


def dispersal_violations(categories: list[str], window: int = 5, max_per_window: int = 2) -> int:
    return sum(
        1
        for start in range(max(0, len(categories) - window + 1))
        if max(Counter(categories[start : start + window]).values()) > max_per_window
    )


def test_a_thousand_lists_over_http_keep_every_policy(server_factory, users):
    server = server_factory(workers=2)
    lists = 0
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for user in users["adults"][:10]:
            client.put(f"/v1/users/{user}/settings", json={"personalization": False})
        opted_out_lists = {}
        for round_ in range(25):
            for user in users["adults"][:20]:
                surface = ("home", "feed")[round_ % 2]
                session, seen, categories, reported = None, [], [], 0
                for page in range(2):
                    body = {"user_id": user, "surface": surface, "page": page, "k": 10}
                    if session:
                        body["session_id"] = session
                    response = client.post("/v1/recommendations", json=body)
                    assert response.status_code == 200, response.text
                    assert response.headers["x-algorithm-filing-number"] == "TEST-FILING-0001"
                    data = response.json()
                    lists += 1
                    session = data["session_id"]
                    items = data["items"]
                    seen += [i["item_id"] for i in items]
                    categories += [i["category"] for i in items]
                    reported += len(data["violations"])
                    if surface == "home" and page == 0:
                        assert items[0]["slot"] == items[4]["slot"] == "mainstream"
                    if data["mode_reason"] == "personalization_off":
                        opted_out_lists.setdefault((surface, page), set()).add(tuple(i["item_id"] for i in items))
                assert len(seen) == len(set(seen))
                assert dispersal_violations(categories) <= reported
    assert lists == 1000
    assert opted_out_lists and all(len(variants) == 1 for variants in opted_out_lists.values())


def test_switch_off_holds_on_the_other_worker_at_once(server_factory, users):
    server = server_factory(workers=2)
    user = users["adults"][30]
    for attempt in range(12):
        off = attempt % 2 == 0
        # a fresh connection for each call, so the two calls land on either worker
        assert httpx.put(f"{server.url}/v1/users/{user}/settings", json={"personalization": not off}).status_code == 200
        mode = httpx.post(f"{server.url}/v1/recommendations", json={"user_id": user}).json()["mode"]
        assert mode == ("non_personalized" if off else "personalized"), attempt


def test_every_acknowledged_list_survives_sigkill(server_factory, users):
    server = server_factory(workers=2)
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(offset: int):
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for n in range(2000):
                if stop.is_set():
                    return
                user = users["adults"][(offset + n) % 50]
                try:
                    response = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed"})
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    with lock:
                        acknowledged.append((response.json()["request_id"], user))

    threads = [threading.Thread(target=burst, args=(i * 7,)) for i in range(4)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 150:
        threading.Event().wait(0.05)
    os.killpg(server.process.pid, signal.SIGKILL)  # the whole server, workers included, mid-burst
    server.process.wait()
    stop.set()
    for thread in threads:
        thread.join()
    log_dir = server.tmp / "logs"
    for request_id, user in acknowledged:
        assert lookup(log_dir, request_id, user) is not None, request_id
    report = verify(log_dir, LogConfig().hmac_key, repair=True)
    assert report.ok, report.summary


def test_serve_refuses_to_start_without_a_writable_log(model_env, tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the log directory should be")
    env = {**model_env, "RECSYS_LOG_DIR": str(blocked / "logs"), "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    result = subprocess.run([RECSYS, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "logs.dir: cannot write the recommendation log" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by scripts/test-deps.sh")
def test_transparency_page_renders_in_headless_chromium(server_factory, tmp_path):
    server = server_factory(workers=1)
    screenshot = tmp_path / "transparency.png"
    html = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", f"{server.url}/transparency"],
        capture_output=True, text=True, timeout=90,
    )
    assert "TEST-FILING-0001" in html.stdout
    assert "personalization" in html.stdout.lower()
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile2'}",
         f"--screenshot={screenshot}", "--window-size=1200,1600", f"{server.url}/transparency"],
        capture_output=True, timeout=90,
    )
    assert screenshot.exists() and screenshot.stat().st_size > 10_000


def worker_pids(server) -> set[int]:
    """The supervisor's worker processes (multiprocessing spawn children running uvicorn)."""
    children = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(server.process.pid)], capture_output=True,
                              text=True).stdout.splitlines()
    return {int(line.split()[0]) for line in children if "spawn_main" in line}


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_share_the_port_and_a_killed_worker_is_replaced(server_factory, users):
    server = server_factory(workers=2)
    before = worker_pids(server)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    while alive(victim):
        time.sleep(0.05)  # connections queued on the dying worker's socket are reset, as with any crash
    # The surviving worker keeps answering on the same port while the supervisor starts a new one.
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for user in users["adults"][:20]:
            assert client.post("/v1/recommendations", json={"user_id": user}, headers={"Connection": "close"}).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(worker_pids(server)) != 2 or victim in worker_pids(server)):
        time.sleep(0.5)
    after = worker_pids(server)
    assert len(after) == 2 and victim not in after
    # New connections reach both workers: each answers /readyz only once its model is loaded.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and httpx.get(f"{server.url}/readyz", timeout=5).status_code != 200:
        time.sleep(0.5)
    statuses = Counter(httpx.get(f"{server.url}/readyz", headers={"Connection": "close"}, timeout=30).status_code
                       for _ in range(40))
    assert statuses == Counter({200: 40})


def test_serve_refuses_a_port_in_use(model_env, tmp_path):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    env = {**model_env, "RECSYS_LOG_DIR": str(tmp_path / "logs"), "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    try:
        result = subprocess.run([RECSYS, "serve", "--port", str(port), "--workers", "2"], env=env, capture_output=True,
                                text=True, timeout=120)
    finally:
        holder.close()
    assert result.returncode == 2
    assert f"--port: cannot listen on 127.0.0.1:{port}" in result.stderr
