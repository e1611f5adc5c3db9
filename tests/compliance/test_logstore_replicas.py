"""Logs across replicas (Art. 28 (draft 24)): each replica writes its own log directory of hash chains (one per
worker process); verify reports every directory and every stream, and query and export answer "every
list served to user X in March" across all of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from compliance.logstore import LogConfig, LogStore, export, pseudonym, query
from compliance.logstore.cli import app
from compliance.logstore.query import log_dir_labels
from compliance.logstore.segment import list_segments
from compliance.logstore.verify import verify_many

KEY = "replica-test-key-0123456789"
MARCH = datetime(2025, 3, 1, tzinfo=UTC)
REPLICAS = ("replica-a", "replica-b")
WORKERS = ("w1", "w2")  # two worker processes per replica: two streams in each directory


def serve(root: Path, lists: int = 48) -> list[dict]:
    """`lists` recommendation lists served round-robin by the workers of both replicas over February,
    March and April (user 7 every third list); each directory gets its own streams. Returns what was served."""
    start = MARCH - timedelta(days=14)
    moments = {"at": start}
    clock = lambda: int(moments["at"].timestamp() * 1e9)  # noqa: E731
    stores = {(replica, worker): LogStore(LogConfig(dir=root / replica / "logs", hmac_key=KEY, segment_max_records=5),
                                          f"{replica}-{worker}", clock=clock)
              for replica in REPLICAS for worker in WORKERS}
    served = []
    for i in range(lists):
        moments["at"] = start + timedelta(days=i * 60 / lists)
        replica, worker = REPLICAS[i % 2], WORKERS[(i // 2) % 2]
        record = {"request_id": f"req-{i:03d}", "user_id": "7" if i % 3 == 0 else f"u{i}", "surface": "home",
                  "page": 0, "items": [{"item_id": f"i{i}"}]}
        stores[replica, worker].append("recommendation", record)
        served.append({**record, "replica": replica, "at": moments["at"]})
    for store in stores.values():
        store.close()
    return served


@pytest.fixture
def replicas(tmp_path: Path) -> tuple[Path, list[dict]]:
    return tmp_path, serve(tmp_path)


def log_dirs(root: Path) -> list[Path]:
    return [root / replica / "logs" for replica in REPLICAS]


def in_march(served: list[dict], user: str) -> list[str]:
    return sorted(r["request_id"] for r in served if r["user_id"] == user and r["at"].month == 3)


def test_every_list_served_to_a_user_in_march_spans_all_replicas(replicas) -> None:
    root, served = replicas
    frame = query(log_dirs(root), user_id="7", start=MARCH, end=datetime(2025, 4, 1, tzinfo=UTC), kind="recommendation")
    assert sorted(frame["request_id"]) == in_march(served, "7")
    assert set(frame["log_dir"]) == {"replica-a/logs", "replica-b/logs"}
    assert frame["ts"].is_sorted()
    by_replica = {r["request_id"]: f"{r['replica']}/logs" for r in served}
    assert all(by_replica[rid] == where for rid, where in zip(frame["request_id"], frame["log_dir"]))
    one = query(log_dirs(root)[0], user_id="7", start=MARCH, end=datetime(2025, 4, 1, tzinfo=UTC))
    assert 0 < one.height < frame.height and set(one["log_dir"]) == {"logs"}


def test_verify_reports_each_directory_and_each_stream(replicas) -> None:
    root, _ = replicas
    result = verify_many(log_dirs(root), KEY)
    assert result.ok, result.summary
    for replica, directory in zip(REPLICAS, log_dirs(root)):
        report = result.reports[directory]
        assert set(report.per_stream) == {f"{replica}-{w}" for w in WORKERS}
        assert all(stream.ok and stream.records == 12 for stream in report.per_stream.values())
    assert "48 records" in result.summary and "2 log directories" in result.summary


def test_tampering_in_one_replica_is_named_there_and_only_there(replicas) -> None:
    root, _ = replicas
    segment = list_segments(log_dirs(root)[1])[0]["replica-b-w2"][1]
    segment.path.write_bytes(segment.path.read_bytes().replace(b'"surface":"home"', b'"surface":"feed"', 1))
    result = verify_many(log_dirs(root), KEY)
    assert not result.ok
    good, bad = (result.reports[d] for d in log_dirs(root))
    assert good.ok
    assert not bad.per_stream["replica-b-w2"].ok and bad.per_stream["replica-b-w1"].ok
    assert bad.per_stream["replica-b-w2"].first.segment == segment.path.name
    assert str(log_dirs(root)[1]) in result.summary and str(log_dirs(root)[0]) not in result.summary


def test_export_spans_replicas_with_each_directorys_proof(replicas, tmp_path: Path) -> None:
    root, served = replicas
    out = tmp_path / "march-7.parquet"
    result = export(log_dirs(root), KEY, MARCH, datetime(2025, 4, 1, tzinfo=UTC), user_id="7", operator="inspector",
                    out=out)
    frame = pl.read_parquet(out)
    assert sorted(frame["request_id"]) == in_march(served, "7") and result.verified
    assert set(frame["user"]) == {pseudonym(KEY.encode(), "7")}
    assert set(frame["log_dir"]) == {"replica-a/logs", "replica-b/logs"}
    proof = json.loads(result.proof.read_text())
    assert set(proof["verification"]["directories"]) == {str(d) for d in log_dirs(root)}
    assert {s["log_dir"] for s in proof["segments"]} == {"replica-a/logs", "replica-b/logs"}
    assert proof["verification"]["ok"] is True


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(["a", "b", "logs", "x-1", "var"]), min_size=1, max_size=4), count=st.integers(2, 4))
def test_log_dir_labels_are_distinct_and_short(tmp_path: Path, parts: list[str], count: int) -> None:
    directories = [tmp_path.joinpath(*parts[:-1], f"replica-{i}", parts[-1]) for i in range(count)]
    labels = log_dir_labels(directories)
    assert len(set(labels.values())) == count
    assert all(not label.startswith("/") and label.startswith("replica-") for label in labels.values())


# --- the CLI: --dir repeated or a glob ------------------------------------------------------------

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), env={"RECSYS_LOG_HMAC_KEY": KEY})


def test_cli_verify_a_glob_reports_per_directory_and_stream(replicas) -> None:
    root, _ = replicas
    result = run("verify", "--dir", str(root / "replica-*" / "logs"))
    assert result.exit_code == 0, result.output
    for replica, directory in zip(REPLICAS, log_dirs(root)):
        assert f"{directory}: OK: 24 records" in result.output
        for worker in WORKERS:
            assert f"stream {replica}-{worker}: OK, 12 records" in result.output
    assert "all: OK: 48 records" in result.output


def test_cli_verify_fails_when_one_replica_is_tampered(replicas) -> None:
    root, _ = replicas
    segment = list_segments(log_dirs(root)[0])[0]["replica-a-w1"][0]
    segment.path.write_bytes(segment.path.read_bytes()[:-10])
    result = run("verify", "--dir", str(log_dirs(root)[0]), "--dir", str(log_dirs(root)[1]))
    assert result.exit_code == 1
    assert f"{log_dirs(root)[0]}: TAMPERED OR DAMAGED" in result.output
    assert f"{log_dirs(root)[1]}: OK" in result.output


def test_cli_query_and_export_across_replicas(replicas, tmp_path: Path) -> None:
    root, served = replicas
    pattern = str(root / "replica-*" / "logs")
    result = run("query", "--dir", pattern, "--user", "7", "--from", "2025-03-01", "--to", "2025-04-01",
                 "--format", "ndjson", "--limit", "0")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert sorted(r["request_id"] for r in rows) == in_march(served, "7")
    out = tmp_path / "e.csv"
    result = run("export", "--dir", pattern, "--from", "2025-03-01", "--to", "2025-04-01", "--user", "7",
                 "--format", "csv", "--operator", "auditor", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"exported {len(in_march(served, '7'))} rows" in result.output


def test_cli_a_glob_matching_nothing_is_named(tmp_path: Path) -> None:
    result = run("verify", "--dir", str(tmp_path / "replica-*" / "logs"))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --dir: '{tmp_path / 'replica-*' / 'logs'}' matches no directory"
