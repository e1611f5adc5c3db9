"""The deployment topology on one machine (issue 13.2, 13.3): `recsys cluster up` starts PostgreSQL, an
MLflow server (PostgreSQL backend store, the model trained into it), two replicas of two workers each
(own ports, process groups and log directories; one state database, one registry) and nginx in front.

What a change made through replica A must do on replica B's next request, what a session paged
across both replicas must keep, that a minor's budget is one budget across replicas, that 2,000 lists
through nginx keep every policy, and that the logs of both replicas verify and answer one query. The
cluster is stopped by `recsys cluster down` in the fixture's teardown, which checks nothing is left.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest

from auditor.articles.lists import (
    check_dedup,
    check_dispersal,
    check_explanations,
    check_front_screen,
    dispersal_violations,
    sessions_from,
)
from auditor.client import Exchange
from auditor.policy import expected_policy
from compliance.minors import MinorsConfig
from compliance.policy import PolicyConfig
from tests.conftest import ADMIN, ADMIN_TOKEN, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

RECSYS = [sys.executable, "-m", "app.cli"]
LOG_KEY = "cluster-test-log-key-0123456789abcdef"
QUICK_TRAINING = {"ranker": {"kind": "mlp", "params": {"epochs": 3}},
                  "review": {"simulation_users": 20, "simulation_sessions": 5, "list_users": 100}}
LISTS_THROUGH_NGINX = 2_000
PAGES_PER_SESSION = 5


def zone_at_local_hour(hour: int) -> str:
    """An IANA zone where it is now about `hour` o'clock: minors' curfew and day boundary stay far away
    whatever time the suite runs."""
    offset = (hour - datetime.now(UTC).hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-8 is UTC+8


class Cluster:
    def __init__(self, state_dir: Path, state: dict):
        self.state_dir = state_dir
        self.state = state
        self.url = state["url"]
        self.a, self.b = (replica["url"] for replica in state["replicas"])
        self.log_dirs = [Path(replica["log_dir"]) for replica in state["replicas"]]
        self.database_url = state["database_url"]


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def cluster(synthetic_dir) -> Cluster:
    # Under /tmp and traversable: as root, PostgreSQL runs as `postgres`, which must reach its folder.
    state_dir = Path(tempfile.mkdtemp(prefix="recsys-cluster-", dir="/tmp" if os.geteuid() == 0 else None))
    state_dir.chmod(0o755)
    (state_dir / "training.json").write_text(json.dumps(QUICK_TRAINING))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLFLOW_", "RECSYS_", "PROMETHEUS_"))}
    env.update({
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "RECSYS_AUTH__MODE": "development",
        "RECSYS_ADMIN_TOKEN": ADMIN_TOKEN,
        "RECSYS_LOG_HMAC_KEY": LOG_KEY,
        "RECSYS_FILING_NUMBER": "TEST-FILING-0001",
        "RECSYS_MINORS__TIME_ZONE": zone_at_local_hour(14),
    })
    ports = {free_port() for _ in range(8)}
    assert len(ports) >= 5
    nginx, replica_a, replica_b, mlflow, postgres = sorted(ports)[:5]
    up = [*RECSYS, "cluster", "up", "--state-dir", str(state_dir), "--port", str(nginx),
          "--replica-port", str(replica_a), "--replica-port", str(replica_b), "--mlflow-port", str(mlflow),
          "--postgres-port", str(postgres), "--workers", "2", "--dataset", str(synthetic_dir),
          "--train-config", str(state_dir / "training.json"), "--timeout", "1000"]
    try:
        result = subprocess.run(up, env=env, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        state = json.loads((state_dir / "cluster.json").read_text())
        yield Cluster(state_dir, state)
    finally:
        state = json.loads((state_dir / "cluster.json").read_text()) if (state_dir / "cluster.json").exists() else {}
        down = subprocess.run([*RECSYS, "cluster", "down", "--state-dir", str(state_dir)], env=env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        from app.cluster.supervisor import group_members

        leaked = [s["name"] for s in state.get("services", []) if group_members(s["pgid"])]
        postmaster = state_dir / "postgres" / "data" / "postmaster.pid"
        held = [port for port in (nginx, replica_a, replica_b, mlflow, postgres) if not port_free(port)]
        shutil.rmtree(state_dir, ignore_errors=True)
        assert down.returncode == 0, down.stderr
        assert not leaked, f"still running after `recsys cluster down`: {leaked}"
        assert not postmaster.exists(), "PostgreSQL still running after `recsys cluster down`"
        assert not held, f"ports still listened on after `recsys cluster down`: {held}"


@pytest.fixture(scope="module")
def items(synthetic_dir) -> pl.DataFrame:
    return pl.read_parquet(synthetic_dir / "items.parquet")


@pytest.fixture(scope="module")
def people(synthetic_dir) -> dict[str, list[str]]:
    """Adults with a history (personalized lists) and minors, split so no two tests share a user."""
    users = pl.read_parquet(synthetic_dir / "users.parquet")
    ages = dict(zip(users["user_id"].to_list(), users["age"].to_list()))
    active = set(pl.read_parquet(synthetic_dir / "interactions.parquet").group_by("user_id").len()
                 .filter(pl.col("len") >= 20)["user_id"].to_list())
    adults = sorted(u for u, age in ages.items() if age is not None and age >= 18 and u in active)
    # Smallest budget first: the budget test needs the fewest events for it.
    minors = sorted((u for u, age in ages.items() if age is not None and age < 18),
                    key=lambda u: (MinorsConfig().daily_budget_minutes(ages[u]), u))
    return {"adults": adults, "minors": minors, "ages": ages}


def recommend(client: httpx.Client, base: str, user_id: str, surface: str = "home", page: int = 0,
              session_id: str | None = None, k: int = 10) -> httpx.Response:
    body = {"user_id": user_id, "surface": surface, "page": page, "k": k}
    if session_id is not None:
        body["session_id"] = session_id
    return client.post(f"{base}/v1/recommendations", json=body)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_two_replicas_behind_nginx_each_with_its_own_processes_and_log(cluster, people):
    services = {s["name"]: s for s in cluster.state["services"]}
    assert {"mlflow", "replica-a", "replica-b", "nginx"} <= set(services)
    assert services["replica-a"]["pgid"] != services["replica-b"]["pgid"]
    status = subprocess.run([*RECSYS, "cluster", "status", "--state-dir", str(cluster.state_dir)], capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    with httpx.Client(timeout=30) as client:
        upstreams = Counter(recommend(client, cluster.url, people["adults"][5]).headers["x-upstream"] for _ in range(6))
        health = [client.get(f"{url}/healthz").json() for url in (cluster.a, cluster.b)]
    assert set(upstreams) == {cluster.a.removeprefix("http://"), cluster.b.removeprefix("http://")}
    assert upstreams.most_common(1)[0][1] == 3  # round-robin: every other request
    assert health[0]["model_version"] == health[1]["model_version"]  # one registry
    assert cluster.log_dirs[0] != cluster.log_dirs[1]


def test_a_change_made_through_replica_a_holds_on_replica_b_on_the_next_request(cluster, people, items):
    adults = people["adults"]
    switcher, tagger, blocked_for, featured_for = adults[0], adults[1], adults[2], adults[3]
    with httpx.Client(timeout=30) as client:
        # The personalization switch (Art. 17 (draft 15)).
        assert recommend(client, cluster.b, switcher).json()["mode"] == "personalized"
        assert client.put(f"{cluster.a}/v1/users/{switcher}/settings", json={"personalization": False}).status_code == 200
        after = recommend(client, cluster.b, switcher).json()
        assert (after["mode"], after["mode_reason"]) == ("non_personalized", "personalization_off")

        # A tag deletion (Art. 10, Art. 17 (draft 15)).
        tags = client.get(f"{cluster.a}/v1/users/{tagger}/tags").json()["tags"]
        assert tags, "the tagger has tags from their history"
        tag = tags[0]["name"]
        assert client.delete(f"{cluster.a}/v1/users/{tagger}/tags/{tag}").status_code == 200
        on_b = client.get(f"{cluster.b}/v1/users/{tagger}/tags").json()
        assert tag in on_b["deleted"] and tag not in [t["name"] for t in on_b["tags"]]

        # An intervention (Art. 11): block the item B served first.
        target = ids(recommend(client, cluster.b, blocked_for, surface="feed"))[0]
        created = client.post(f"{cluster.a}/v1/admin/interventions", headers=ADMIN,
                              json={"kind": "block", "item_id": target, "reason": "cluster test", "ttl_seconds": 3600})
        assert created.status_code == 201, created.text
        assert target not in ids(recommend(client, cluster.b, blocked_for, surface="feed"))

        # A feature-library entry (Art. 9): a regex naming exactly the title of the item B served first.
        target = ids(recommend(client, cluster.b, featured_for, surface="feed"))[0]
        title = items.filter(pl.col("item_id") == target)["title"][0]
        entry = client.post(f"{cluster.a}/v1/admin/features", headers=ADMIN,
                            json={"kind": "regex", "pattern": f"^{re.escape(title)}$", "category": "harmful"})
        assert entry.status_code == 201, entry.text
        assert target not in ids(recommend(client, cluster.b, featured_for, surface="feed"))


def test_a_session_paged_alternately_on_both_replicas_never_repeats_and_keeps_dispersal(cluster, people, items):
    user = people["adults"][4]
    policy = PolicyConfig().dispersal
    content = dict(zip(items["item_id"].to_list(), items["content_key"].to_list()))
    exchanges, session_id = [], None
    with httpx.Client(timeout=30) as client:
        for page in range(8):
            base = (cluster.a, cluster.b)[page % 2]
            response = recommend(client, base, user, surface="feed", page=page, session_id=session_id)
            assert response.status_code == 200, response.text
            body = response.json()
            session_id = session_id or body["session_id"]
            exchanges.append(Exchange("POST", "/v1/recommendations", 200, body=body,
                                      sent={"user_id": user, "session_id": session_id}))
    pages = [e.data for e in exchanges]
    served = [item for body in pages for item in body["items"]]
    assert all(body["violations"] == [] for body in pages)
    assert len({i["item_id"] for i in served}) == len(served) == 8 * 10
    assert len({content[i["item_id"]] for i in served}) == len(served)  # content de-duplication too
    assert dispersal_violations([i["category"] for i in served], policy.window, policy.max_per_window) == []
    dispersal = check_dispersal(sessions_from(exchanges), policy.window, policy.max_per_window)
    assert dispersal.passed and dispersal.counts["violations_observed"] == 0


def test_a_minors_usage_budget_adds_up_across_replicas(cluster, people, synthetic_dir):
    """Events on A and on B, five minutes apart, count into one budget: each replica's share alone is far
    below it, together they reach it, and then both replicas refuse."""
    from serving.state.db import make_engine
    from serving.state.store import StateStore
    from compliance import minors

    config = MinorsConfig(time_zone=zone_at_local_hour(14))
    user = people["minors"][0]
    budget_s = config.daily_budget_minutes(people["ages"][user]) * 60
    gap = config.activity_gap_cap_seconds  # a gap at the cap counts in full
    steps = math.ceil((budget_s - config.activity_floor_seconds) / gap)
    now = datetime.now(UTC)
    first = now - timedelta(seconds=steps * gap + 60)
    item = pl.read_parquet(synthetic_dir / "items.parquet")["item_id"][0]
    with httpx.Client(timeout=30) as client:
        for step in range(steps + 1):
            base = (cluster.a, cluster.b)[step % 2]
            event = {"event_id": f"budget-{user}-{step}", "user_id": user, "item_id": item, "type": "click",
                     "ts": (first + timedelta(seconds=step * gap)).isoformat()}
            response = client.post(f"{base}/v1/events", json={"events": [event]})
            assert response.status_code == 200, response.text
        store = StateStore(make_engine(cluster.database_url))
        _, used = store.get_usage(user, minors.local_day(now, config))
        assert used == pytest.approx(config.activity_floor_seconds + steps * gap)
        assert used >= budget_s
        a_share = config.activity_floor_seconds + sum(gap for step in range(1, steps + 1) if step % 2 == 0)
        assert a_share < budget_s and used - a_share < budget_s
        for base in (cluster.a, cluster.b):
            refused = recommend(client, base, user)
            assert refused.status_code == 403 and refused.json()["code"] == "minors_daily_limit", refused.text


def test_2000_lists_through_nginx_keep_every_policy(cluster, people, items):
    adults = people["adults"][10:]
    minors = people["minors"][1:]  # the first one has used up their day in the budget test
    rating = dict(zip(items["item_id"].to_list(), items["age_rating"].to_list()))
    flagged = set(items.filter(pl.col("flagged"))["item_id"].to_list())
    content = dict(zip(items["item_id"].to_list(), items["content_key"].to_list()))
    max_rating = {u: MinorsConfig().max_age_rating(people["ages"][u]) for u in minors}
    rng = random.Random(13)
    sessions = [(rng.choice(minors if i % 10 == 0 and minors else adults), ("home", "feed")[i % 2])
                for i in range(LISTS_THROUGH_NGINX // PAGES_PER_SESSION)]

    def walk(session: tuple[str, str]) -> list[Exchange]:
        user, surface = session
        out, session_id = [], None
        with httpx.Client(timeout=60) as client:
            for page in range(PAGES_PER_SESSION):
                response = recommend(client, cluster.url, user, surface=surface, page=page, session_id=session_id)
                try:
                    body = response.json()
                except ValueError:  # nginx's own error page: keep what it said for the assertion below
                    body = {"detail": f"not JSON: {response.text[:300]}"}
                session_id = session_id or body.get("session_id")
                out.append(Exchange("POST", "/v1/recommendations", response.status_code,
                                    {"x-upstream": response.headers.get("x-upstream", "")}, body,
                                    sent={"user_id": user, "surface": surface, "page": page, "session_id": session_id}))
        return out

    with ThreadPoolExecutor(max_workers=8) as pool:
        exchanges = [e for walked in pool.map(walk, sessions) for e in walked]
    assert len(exchanges) == LISTS_THROUGH_NGINX
    assert [e.summary() for e in exchanges if e.status != 200] == []
    lists = [e.data for e in exchanges]
    upstreams = Counter(e.headers["x-upstream"] for e in exchanges)
    assert len(upstreams) == 2 and min(upstreams.values()) >= LISTS_THROUGH_NGINX * 0.4, upstreams

    assert sum(len(body["violations"]) for body in lists) == 0
    dedup = check_dedup(sessions_from(exchanges))
    assert dedup.passed, dedup.failures
    assert dedup.counts["duplicates_within_list"] == dedup.counts["duplicates_across_pages"] == 0
    for session in sessions_from(exchanges):
        keys = [content[i["item_id"]] for body in session.pages for i in body["items"]]
        assert len(keys) == len(set(keys)), f"content repeated in session {session.session_id}"
    with httpx.Client(timeout=30) as client:
        declared = expected_policy(client.get(f"{cluster.url}/v1/transparency").json())
    dispersal = check_dispersal(sessions_from(exchanges), declared.dispersal_window, declared.dispersal_max)
    assert dispersal.passed and dispersal.counts["violations_observed"] == 0, dispersal.failures
    front = check_front_screen(lists, declared)
    assert front.passed, front.failures
    explained = check_explanations(lists)
    assert explained.passed, explained.failures
    assert not [i["item_id"] for body in lists for i in body["items"] if i["item_id"] in flagged]
    too_old = [(body["user_id"], i["item_id"]) for body in lists if body["user_id"] in max_rating
               for i in body["items"] if rating[i["item_id"]] > max_rating[body["user_id"]]]
    assert too_old == []

    # A logged list is found through nginx whichever replica served it (Art. 17 (draft 15): the list as served).
    with httpx.Client(timeout=30) as client:
        for body in rng.sample(lists, 20):
            found = client.get(f"{cluster.url}/v1/recommendations/{body['request_id']}", params={"user_id": body["user_id"]})
            assert found.status_code == 200, found.text
            assert [i["item_id"] for i in found.json()["items"]] == [i["item_id"] for i in body["items"]]


def test_the_logs_of_both_replicas_verify_per_stream_and_answer_one_query(cluster, people):
    """Each replica writes its own hash chains; one command verifies them all and one query spans them."""
    user = people["adults"][4]  # paged alternately on A and B above
    env = {**os.environ, "RECSYS_LOG_HMAC_KEY": LOG_KEY}
    pattern = str(cluster.state_dir / "replica-*" / "logs")
    verified = subprocess.run([*RECSYS, "logs", "verify", "--dir", pattern], env=env, capture_output=True, text=True,
                              timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for log_dir in cluster.log_dirs:
        assert f"{log_dir}: OK" in verified.stdout
    today = datetime.now(UTC).date()
    queried = subprocess.run([*RECSYS, "logs", "query", "--dir", pattern, "--user", user, "--kind", "recommendation",
                              "--from", today.isoformat(), "--to", (today + timedelta(days=1)).isoformat(),
                              "--format", "ndjson", "--limit", "0"], env=env, capture_output=True, text=True, timeout=300)
    assert queried.returncode == 0, queried.stderr
    rows = [json.loads(line) for line in queried.stdout.splitlines() if line.strip()]
    assert len(rows) == 8 and {row["log_dir"] for row in rows} == {"replica-a/logs", "replica-b/logs"}


# --- the topology's pieces, without starting it ------------------------------------------------


def test_a_port_given_twice_is_refused_in_one_line(tmp_path):
    result = subprocess.run([*RECSYS, "cluster", "up", "--state-dir", str(tmp_path), "--port", "18080",
                             "--replica-port", "18080", "--replica-port", "18081"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ports: each service needs its own port; [18080] given twice"]
    assert not (tmp_path / "cluster.json").exists()


def test_status_and_down_without_a_cluster_say_so(tmp_path):
    status = subprocess.run([*RECSYS, "cluster", "status", "--state-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 1 and "no cluster has run" in status.stdout
    down = subprocess.run([*RECSYS, "cluster", "down", "--state-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert down.returncode == 0 and "no cluster has run" in down.stdout


def test_the_generated_nginx_config_is_valid_and_balances_every_replica(tmp_path):
    from app.cluster.topology import ClusterSpec, nginx_command, nginx_conf

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        pytest.fail("nginx is not installed: scripts/nginx.sh install (make test runs it)", pytrace=False)
    spec = ClusterSpec(state_dir=tmp_path, port=free_port(), replica_ports=(18101, 18102, 18103))
    for folder in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (spec.nginx_dir / folder).mkdir(parents=True, exist_ok=True)
    conf = nginx_conf(spec)
    (spec.nginx_dir / "nginx.conf").write_text(conf)
    check = subprocess.run(nginx_command(spec, nginx, test=True), capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert all(f"server 127.0.0.1:{port};" in conf for port in spec.replica_ports)
    assert f"listen 127.0.0.1:{spec.port};" in conf and "daemon off;" in conf
    assert conf.count("http_404") == 1  # only the logged-list lookup tries the next replica on a 404


def test_secrets_are_made_once_private_and_kept(tmp_path, monkeypatch):
    from app.cluster.topology import stored_secret

    monkeypatch.delenv("RECSYS_LOG_HMAC_KEY", raising=False)
    first = stored_secret(tmp_path / "log-hmac.key", "RECSYS_LOG_HMAC_KEY")
    assert len(first) >= 32 and (tmp_path / "log-hmac.key").stat().st_mode & 0o777 == 0o600
    assert stored_secret(tmp_path / "log-hmac.key", "RECSYS_LOG_HMAC_KEY") == first  # the old logs still verify
    monkeypatch.setenv("RECSYS_LOG_HMAC_KEY", "from-the-environment-0123456789abcdef")
    assert stored_secret(tmp_path / "log-hmac.key", "RECSYS_LOG_HMAC_KEY") == "from-the-environment-0123456789abcdef"


def test_a_cluster_that_cannot_start_stops_what_it_started_and_says_why():
    """No model in a fresh registry and --no-train: PostgreSQL and MLflow were up; both are stopped again."""
    state_dir = Path(tempfile.mkdtemp(prefix="recsys-cluster-fail-", dir="/tmp" if os.geteuid() == 0 else None))
    state_dir.chmod(0o755)
    ports = sorted({free_port() for _ in range(8)})[:5]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "RECSYS_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    try:
        result = subprocess.run([*RECSYS, "cluster", "up", "--state-dir", str(state_dir), "--no-train",
                                 "--port", str(ports[0]), "--replica-port", str(ports[1]), "--replica-port", str(ports[2]),
                                 "--mlflow-port", str(ports[3]), "--postgres-port", str(ports[4]), "--timeout", "600"],
                                env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        state = json.loads((state_dir / "cluster.json").read_text())
    finally:
        subprocess.run([*RECSYS, "cluster", "down", "--state-dir", str(state_dir)], env=env, capture_output=True, timeout=300)
    try:
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert "--no-train: the MLflow server holds no recsys-two-stage@champion" in result.stderr
        assert state["status"] == "failed" and "--no-train" in state["error"]
        assert state["services"] == []  # every service it had started was stopped before it said so
        assert not (state_dir / "postgres" / "data" / "postmaster.pid").exists()
        assert all(port_free(port) for port in ports)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
