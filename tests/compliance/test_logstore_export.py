"""export (Art. 28 (draft 24), Art. 29 (draft 25)), compact/query and the `recsys logs` CLI over a real log directory."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from compliance.logstore import LogConfig, LogStore, compact, export, pseudonym, query, verify
from compliance.logstore.cli import app
from compliance.logstore.segment import list_segments

KEY = "test-key-0123456789abcdef"
MARCH = datetime(2025, 3, 1, tzinfo=UTC)


def fill(directory: Path) -> None:
    """40 recommendation lists over 20 days from March 1st (users 100..103), one settings record."""
    now = {"at": MARCH}
    clock = lambda: int(now["at"].timestamp() * 1e9)  # noqa: E731
    with LogStore(LogConfig(dir=directory, hmac_key=KEY, segment_max_records=8), "w", clock=clock) as store:
        for i in range(40):
            now["at"] = MARCH + timedelta(hours=12 * i)
            store.append(
                "recommendation",
                {
                    "request_id": f"req-{i}",
                    "user_id": 100 + i % 4,
                    "surface": "home",
                    "page": 1 + i % 2,
                    "mode": "personalized",
                    "model_version": "m7",
                    "items": [{"item_id": str(i), "position": 0, "reason": {"code": "c", "text": "t"}}],
                    "request": {"user_id": 100 + i % 4, "n": 1},
                },
            )
        store.append("settings", {"user_id": 101, "personalization": False})


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    fill(directory)
    return directory


def test_query_filters_by_user_time_and_kind(logs: Path) -> None:
    frame = query(logs, user_id=101, start=MARCH, end=MARCH + timedelta(days=10))
    assert set(frame["user_id"]) == {"101"}
    assert frame.height == 5  # i = 1, 5, 9, 13, 17 (days 0.5 .. 8.5)
    assert frame["ts"].is_sorted()
    assert frame.filter(pl.col("kind") == "recommendation")["n_items"].to_list() == [1] * 5
    assert query(logs, kind="settings").height == 1
    assert query(logs).height == 41


def test_compact_writes_parquet_and_query_returns_the_same_rows(logs: Path) -> None:
    before = query(logs, user_id=102)
    result = compact(logs, KEY)
    assert result.skipped == []
    assert len(result.written) == len(list_segments(logs)[0]["w"])
    assert all(p.parent.name.startswith("date=2025-03-") for p in result.written)
    after = query(logs, user_id=102)
    assert after.equals(before)
    assert compact(logs, KEY).written == []  # nothing left to do
    assert query(logs, user_id=102, start=MARCH + timedelta(days=2), end=MARCH + timedelta(days=4)).height == 1


def test_compact_skips_a_tampered_segment(logs: Path) -> None:
    segment = list_segments(logs)[0]["w"][1]
    segment.path.write_bytes(segment.path.read_bytes().replace(b'"page":1', b'"page":3', 1))
    result = compact(logs, KEY)
    assert len(result.skipped) == 1 and segment.path.name in result.skipped[0]


def test_export_pseudonymises_writes_proof_and_logs_itself(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "march.parquet"
    result = export(logs, KEY, MARCH, MARCH + timedelta(days=31), user_id=101, operator="inspector-7", out=out)
    frame = pl.read_parquet(out)
    assert frame.height == result.rows == 11  # 10 lists + 1 settings record
    assert set(frame["user"]) == {pseudonym(KEY.encode(), 101)}
    assert "101" not in out.read_bytes().decode("latin-1").replace(pseudonym(KEY.encode(), 101), "")
    assert all('"user_id":"u_' in r for r in frame["request"].drop_nulls())
    assert frame.columns[:4] == ["request_id", "ts", "kind", "user"]

    proof = json.loads(result.proof.read_text())
    assert proof["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == result.sha256
    assert proof["rows"] == 11 and proof["reveal"] is False and proof["verification"]["ok"] is True
    assert {s["segment"] for s in proof["segments"]} == {s.path.name for s in list_segments(logs)[0]["w"]}
    assert all("sig" in s for s in proof["segments"])
    assert proof["user"] == pseudonym(KEY.encode(), 101)

    exports = query(logs, kind="export")
    assert exports.height == 1
    record = json.loads(exports["extra"][0])
    assert record["operator"] == "inspector-7" and record["reveal"] is False and record["sha256"] == result.sha256
    assert verify(logs, KEY).ok


def test_export_reveal_writes_real_ids_as_csv_and_records_the_reveal(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    export(logs, KEY, MARCH, MARCH + timedelta(days=5), fmt="csv", reveal=True, operator="dpo", out=out)
    frame = pl.read_csv(out, schema_overrides={"user": pl.Utf8})
    assert set(frame["user"]) <= {"100", "101", "102", "103"}
    assert frame.height == 10
    record = json.loads(query(logs, kind="export")["extra"][0])
    assert record["reveal"] is True and record["format"] == "csv"


def test_export_refuses_bad_arguments(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    with pytest.raises(ValueError, match="operator"):
        export(logs, KEY, MARCH, MARCH + timedelta(days=1), operator=" ", out=out)
    with pytest.raises(ValueError, match="fmt"):
        export(logs, KEY, MARCH, MARCH + timedelta(days=1), fmt="xlsx", operator="a", out=out)
    with pytest.raises(ValueError, match="empty range"):
        export(logs, KEY, MARCH, MARCH, operator="a", out=out)
    out.write_text("evidence")
    with pytest.raises(ValueError, match="already exists"):
        export(logs, KEY, MARCH, MARCH + timedelta(days=1), operator="a", out=out)


# --- CLI -------------------------------------------------------------------------------------

runner = CliRunner()


def run(*args: str, key: str = KEY):
    return runner.invoke(app, list(args), env={"RECSYS_LOG_HMAC_KEY": key})


def test_cli_verify_ok_and_tampered(logs: Path) -> None:
    result = run("verify", "--dir", str(logs))
    assert result.exit_code == 0, result.output
    assert "OK: 41 records" in result.output
    segment = list_segments(logs)[0]["w"][2]
    segment.path.write_bytes(segment.path.read_bytes().replace(b'"page":2', b'"page":1', 1))
    result = run("verify", "--dir", str(logs))
    assert result.exit_code == 1
    assert f"first: {segment.path.name}:2 (seq 6): hash mismatch" in result.output


def test_cli_verify_repair_seals_dead_streams(logs: Path) -> None:
    crashed = LogStore(LogConfig(dir=logs, hmac_key=KEY), "crashed")
    crashed.append("recommendation", {"user_id": 1})
    crashed._abandon()  # dies without sealing
    (logs / crashed.current_segment.name).open("ab").write(b'{"seq":2,"ts":"20')
    assert run("verify", "--dir", str(logs)).exit_code == 1
    result = run("verify", "--dir", str(logs), "--repair")
    assert result.exit_code == 0, result.output
    assert "crashed: sealed" in result.output


def test_cli_key_file_and_wrong_key(logs: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert runner.invoke(app, ["verify", "--dir", str(logs), "--key-file", str(key_file)], env={}).exit_code == 0
    assert run("verify", "--dir", str(logs), key="wrong-key-0123456789").exit_code == 1
    result = runner.invoke(app, ["verify", "--dir", str(logs), "--key-file", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "--key-file: cannot read" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--from", "x", "--to", "2025-04-01", "--operator", "a", "--out", "o.parquet"],
         "--from: not an ISO date: 'x'"),
        (["export", "--from", "2025-03-01", "--to", "2025-02-01", "--operator", "a", "--out", "o.parquet"],
         "--to: '2025-02-01' is not after --from"),
        (["export", "--from", "2025-03-01", "--to", "2025-04-01", "--operator", "a", "--out", "o.xlsx",
          "--format", "xlsx"], "--format: must be parquet or csv"),
        (["purge", "--retention-days", "90"], "--retention-days: 90 is below the minimum of 180 days"),
        (["query", "--to", "yesterday"], "--to: not an ISO date: 'yesterday'"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line_exit_2(logs: Path, args: list[str], message: str) -> None:
    result = run(*args, "--dir", str(logs))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}" or result.output.strip().startswith(f"error: {message}")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_missing_dir_is_named(tmp_path: Path) -> None:
    result = run("verify", "--dir", str(tmp_path / "absent"))
    assert result.exit_code == 2 and "--dir: not a directory" in result.output


def test_cli_export_compact_query_purge(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.csv"
    result = run("export", "--dir", str(logs), "--from", "2025-03-01", "--to", "2025-04-01", "--user", "103",
                 "--format", "csv", "--operator", "auditor", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exported 10 rows" in result.output and out.with_name("e.csv.proof.json").exists()
    assert run("compact", "--dir", str(logs)).exit_code == 0
    result = run("query", "--dir", str(logs), "--user", "103", "--format", "ndjson", "--limit", "0")
    assert result.exit_code == 0
    kinds = [json.loads(line)["kind"] for line in result.output.strip().splitlines()]
    assert kinds.count("recommendation") == 10 and kinds.count("export") == 1  # the export names the user
    result = run("query", "--dir", str(logs), "--user", "103", "--kind", "recommendation")
    assert result.exit_code == 0 and "10 row(s)" in result.output
    result = run("purge", "--dir", str(logs))
    assert result.exit_code == 0 and "purged" in result.output
