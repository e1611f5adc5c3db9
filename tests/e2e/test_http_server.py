"""Over a real socket: `recsys serve` with 2 uvicorn workers, driven with httpx."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

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
                    if surface == "home" and page == 0:  # the default front screen: >= 2 editorial items in 1-10
                        editorial = [i for i in items[:10] if i["slot"] == "mainstream"]
                        assert len(editorial) >= 2 and not [v for v in data["violations"] if v["rule"] == "front_screen"]
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


def thread_states(pid: int) -> set[str]:
    """The state letter of each of the process's threads ('T' stopped, 'Z' zombie); empty once gone."""
    states = set()
    for task in os.listdir(f"/proc/{pid}/task") if os.path.exists(f"/proc/{pid}/task") else []:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                states.add(stat.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            pass
    return states


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    return bool(thread_states(pid) - {"Z", "X"})


def tcp_table() -> list[list[str]]:
    with open("/proc/net/tcp") as table:
        return [line.split() for line in table.readlines()[1:]]


def listeners(port: int) -> dict[int, int]:
    """The listening sockets on 127.0.0.1:port: inode -> connections waiting in its accept queue."""
    return {int(row[9]): int(row[4].split(":")[1], 16) for row in tcp_table()
            if row[3] == "0A" and int(row[1].split(":")[1], 16) == port}


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[len("socket:["):-1]))
    return inodes


def workers_serving(server, connections: int = 16) -> Counter:
    """Which worker process holds each of `connections` keep-alive connections opened together."""
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(connections)]
    try:
        client_ports = []
        for client in clients:
            response = client.get("/readyz")
            assert response.status_code == 200
            client_ports.append(response.extensions["network_stream"].get_extra_info("client_addr")[1])
        table, owners = tcp_table(), {pid: socket_inodes(pid) for pid in worker_pids(server)}
        served = Counter()
        for client_port in client_ports:
            inode = next(int(row[9]) for row in table if row[3] == "01" and int(row[1].split(":")[1], 16) == server.port
                         and int(row[2].split(":")[1], 16) == client_port)
            served[next((pid for pid, inodes in owners.items() if inode in inodes), None)] += 1
        return served
    finally:
        for client in clients:
            client.close()


def post_on_a_new_connection(port: int, user: str) -> int:
    """POST /v1/recommendations on a connection of its own; the response's status code."""
    body = json.dumps({"user_id": user, "surface": "feed"}).encode()
    head = (f"POST /v1/recommendations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    if not response:
        raise ConnectionError("closed without a response")
    return int(response.split(b" ", 2)[1])


def server_output(server) -> str:
    """The end of what the server printed so far (its stdout is a pipe; read without waiting)."""
    fd = server.process.stdout.fileno()
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20).decode(errors="replace")[-3000:]
    except BlockingIOError:
        return ""


def test_workers_share_the_port_and_a_killed_worker_is_replaced(server_factory, users):
    """A worker killed under a stream of new connections resets none of them. The supervisor holds
    each worker's listening socket and hands it to the replacement: connections the kernel queued
    on it while no worker accepted wait there, then are served by the replacement."""
    server = server_factory(workers=2)
    deadline = time.monotonic() + 60
    while len(listeners(server.port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # a worker listens once its model is loaded
    sockets = set(listeners(server.port))
    before = worker_pids(server)
    assert len(sockets) == 2 and len(before) == 2
    assert set(workers_serving(server)) == before  # keep-alive connections land on both workers
    victim = min(before)
    (victim_socket,) = sockets & socket_inodes(victim)
    adults = users["adults"][:50]

    lock, finished = threading.Lock(), threading.Event()
    new_connections: list[tuple[float, float, int | str]] = []  # started, ended, status code or error
    keep_alive: dict[int, list[int | str]] = {0: [], 1: []}

    def on_a_new_connection(n: int) -> None:
        started = time.monotonic()
        try:
            outcome: int | str = post_on_a_new_connection(server.port, adults[n % len(adults)])
        except OSError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            new_connections.append((started, time.monotonic(), outcome))

    def on_one_connection(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not finished.is_set():
                try:
                    outcome: int | str = client.post("/v1/recommendations", json={"user_id": adults[n]}).status_code
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                keep_alive[n].append(outcome)
                finished.wait(0.01)

    threads = [threading.Thread(target=on_one_connection, args=(n,)) for n in keep_alive]
    for thread in threads:
        thread.start()
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:  # open loop: a new connection every 15 ms
            for n in range(300):
                if n == 60:  # the victim stops accepting; what the kernel hashes to its socket queues there
                    os.kill(victim, signal.SIGSTOP)
                    while thread_states(victim) - {"T", "t"}:
                        time.sleep(0.001)
                    stopped_at = time.monotonic()
                if n == 120:
                    os.kill(victim, signal.SIGKILL)
                    while alive(victim):
                        time.sleep(0.01)
                    # Its socket outlives it, still listening, with the connections queued on it.
                    assert listeners(server.port)[victim_socket] > 0
                pool.submit(on_a_new_connection, n)
                time.sleep(0.015)
    finally:
        finished.set()
        for thread in threads:
            thread.join()

    assert len(new_connections) == 300
    # Only a connection the victim had accepted before it stopped (a request in flight) may be lost.
    lost = [(started, ended, outcome) for started, ended, outcome in new_connections if outcome != 200]
    assert all(started < stopped_at < ended for started, ended, _ in lost), (lost, server_output(server))
    assert len(lost) <= 5, lost
    for outcomes in keep_alive.values():  # at most the one connection a client had to the victim
        assert len([outcome for outcome in outcomes if outcome != 200]) <= 1, (Counter(outcomes), server_output(server))
        assert outcomes[-1] == 200
    after = worker_pids(server)
    assert len(after) == 2 and victim not in after
    (replacement,) = after - before
    assert set(listeners(server.port)) == sockets  # the same two sockets all along
    assert victim_socket in socket_inodes(replacement)
    assert set(workers_serving(server)) == after


def test_serve_refuses_a_port_in_use(model_env, tmp_path):
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
