"""purge (Art. 28 (draft 24)): only whole, sealed segments past retention go, recorded; never under 180 days."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compliance.logstore import LogConfig, LogStore, purge, query, verify
from compliance.logstore.segment import list_segments

KEY = "test-key-0123456789abcdef"
NOW = datetime.now(UTC)


def fixed_clock(moment: datetime):
    state = {"ns": int(moment.timestamp() * 1e9)}

    def now() -> int:
        state["ns"] += 1_000_000
        return state["ns"]

    return now


def write_stream(directory: Path, stream: str, days_ago: float, records: int, per_segment: int = 3) -> LogStore:
    config = LogConfig(dir=directory, hmac_key=KEY, segment_max_records=per_segment)
    store = LogStore(config, stream, clock=fixed_clock(NOW - timedelta(days=days_ago)))
    for i in range(records):
        store.append("recommendation", {"request_id": f"{stream}-{i}", "user_id": i})
    return store


def names(directory: Path, stream: str) -> list[str]:
    return [s.path.name for s in list_segments(directory)[0].get(stream, [])]


def test_purge_deletes_only_old_sealed_segments_and_records_it(tmp_path: Path) -> None:
    write_stream(tmp_path, "old", days_ago=200, records=7).close()  # 3 sealed segments
    write_stream(tmp_path, "recent", days_ago=10, records=4).close()
    live = write_stream(tmp_path, "live", days_ago=300, records=2)  # open: its segment is unsealed
    old_names, recent_names = names(tmp_path, "old"), names(tmp_path, "recent")

    with LogStore(LogConfig(dir=tmp_path, hmac_key=KEY), "ops") as ops:
        deleted = purge(tmp_path, KEY, 180, store=ops, operator="retention-job")

    assert sorted(p.name for p in deleted) == sorted(old_names)
    assert names(tmp_path, "old") == []
    assert names(tmp_path, "recent") == recent_names
    assert len(names(tmp_path, "live")) == 1
    assert not any(tmp_path.glob("old__*"))  # seals gone too
    record = query(tmp_path, kind="purge").row(0, named=True)
    extra = json.loads(record["extra"])
    assert extra["operator"] == "retention-job" and extra["retention_days"] == 180
    assert sorted(d["segment"] for d in extra["deleted"]) == sorted(old_names)
    live.close()
    report = verify(tmp_path, KEY)
    assert report.ok, report.summary


def test_purge_keeps_the_young_tail_of_a_stream_and_the_chain_still_verifies(tmp_path: Path) -> None:
    now = {"at": NOW - timedelta(days=250)}
    clock = lambda: int(now["at"].timestamp() * 1e9)  # noqa: E731
    with LogStore(LogConfig(dir=tmp_path, hmac_key=KEY, segment_max_records=2), "w", clock=clock) as store:
        for day in range(0, 250, 25):
            now["at"] = NOW - timedelta(days=250 - day)
            store.append("recommendation", {"user_id": day})
            store.append("recommendation", {"user_id": day + 1})
    before = names(tmp_path, "w")
    deleted = purge(tmp_path, KEY, 180)
    after = names(tmp_path, "w")
    assert [p.name for p in deleted] == before[: len(before) - len(after)]
    assert len(deleted) == 3 and after == before[3:]  # days 250, 225, 200 ago
    report = verify(tmp_path, KEY)
    assert report.ok, report.summary
    assert len(purge(tmp_path, KEY, 180)) == 0  # idempotent


def test_hand_deleted_segments_are_not_accepted_like_purged_ones(tmp_path: Path) -> None:
    write_stream(tmp_path, "w", days_ago=200, records=7).close()
    first = list_segments(tmp_path)[0]["w"][0]
    first.path.unlink()
    first.seal_path.unlink()
    report = verify(tmp_path, KEY)
    assert not report.ok
    assert "deleted without a purge record" in report.first.reason


def test_dead_unsealed_segments_are_sealed_then_purged(tmp_path: Path) -> None:
    crashed = write_stream(tmp_path, "crashed", days_ago=190, records=2)
    crashed._abandon()  # the process "dies": no seal, lock released
    unsealed = names(tmp_path, "crashed")
    deleted = purge(tmp_path, KEY, 180)
    assert [p.name for p in deleted] == unsealed
    assert verify(tmp_path, KEY).ok


def test_a_fully_purged_stream_name_can_be_reused(tmp_path: Path) -> None:
    write_stream(tmp_path, "w", days_ago=200, records=4).close()
    purge(tmp_path, KEY, 180)
    with LogStore(LogConfig(dir=tmp_path, hmac_key=KEY), "w") as store:
        receipt = store.append("recommendation", {"user_id": 1})
    assert receipt.seq == 5
    assert verify(tmp_path, KEY).ok


@pytest.mark.parametrize("days", [0, 90, 179])
def test_retention_under_180_days_is_refused(tmp_path: Path, days: int) -> None:
    write_stream(tmp_path, "w", days_ago=200, records=2).close()
    with pytest.raises(ValueError, match=r"minimum of 180 days.*Art\. 28 \(draft 24\)"):
        purge(tmp_path, KEY, days)
    assert len(names(tmp_path, "w")) == 1


def test_purge_cannot_run_ahead_of_the_clock(tmp_path: Path) -> None:
    write_stream(tmp_path, "w", days_ago=10, records=2).close()
    with pytest.raises(ValueError, match="now: .* future"):
        purge(tmp_path, KEY, 180, now=NOW + timedelta(days=200))
    assert len(names(tmp_path, "w")) == 1
