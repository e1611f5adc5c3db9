"""Log store (Art. 28 (draft 24)): append/read, keyed chain across segments, lookup, concurrency, startup checks."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from compliance.logstore import (
    LogConfig,
    LogStore,
    LogStoreError,
    LogStoreUnavailable,
    lookup,
    new_request_id,
    request_id_time,
    verify,
)
from compliance.logstore.segment import list_segments, read_seal, seal_signature_ok

KEY = "test-key-0123456789abcdef"


def make_config(directory: Path, **overrides) -> LogConfig:
    return LogConfig(dir=directory, hmac_key=KEY, **overrides)


def read_entries(directory: Path, stream: str) -> list[dict]:
    entries = []
    for segment in list_segments(directory)[0][stream]:
        entries += [json.loads(line) for line in segment.path.read_bytes().splitlines()]
    return entries


def clock_at(moment: datetime, step: timedelta = timedelta(milliseconds=1)):
    """A deterministic ns clock starting at `moment`, advancing `step` per call."""
    state = {"ns": int(moment.timestamp() * 1e9)}

    def now() -> int:
        state["ns"] += int(step.total_seconds() * 1e9)
        return state["ns"]

    return now


def recommendation(user_id: int | str, request_id: str | None = None) -> dict:
    return {
        "request_id": request_id or new_request_id(),
        "user_id": user_id,
        "surface": "home",
        "page": 1,
        "mode": "personalized",
        "model_version": "m1",
        "items": [{"item_id": "i1", "position": 0, "slot": "organic", "score": 0.5,
                   "reason": {"code": "similar", "text": "Because you watched X"}}],
    }  # fmt: skip


def test_round_trip_and_receipts(tmp_path: Path) -> None:
    with LogStore(make_config(tmp_path), "w1") as store:
        records = [recommendation(u) for u in range(5)] + [{"user_id": 3, "personalization": False}]
        receipts = [store.append("recommendation", r) for r in records[:5]]
        receipts.append(store.append("settings", records[5]))
    entries = read_entries(tmp_path, "w1")
    assert [e["data"] for e in entries] == records
    assert [e["kind"] for e in entries] == ["recommendation"] * 5 + ["settings"]
    assert [(e["seq"], e["hash"]) for e in entries] == [(r.seq, r.hash) for r in receipts]
    assert [r.seq for r in receipts] == [1, 2, 3, 4, 5, 6]
    assert all(e["ts"].endswith("Z") for e in entries)
    assert verify(tmp_path, KEY).ok


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.dictionaries(st.text(max_size=10), json_values, max_size=6), min_size=1, max_size=6))
def test_any_json_record_round_trips_and_verifies(records: list[dict]) -> None:
    with tempfile.TemporaryDirectory() as raw:
        directory = Path(raw)
        with LogStore(make_config(directory, segment_max_records=4), "w") as store:
            for record in records:
                store.append("tags", record)
        assert [e["data"] for e in read_entries(directory, "w")] == records
        assert verify(directory, KEY).ok


def test_chain_links_across_segments_and_seals(tmp_path: Path) -> None:
    with LogStore(make_config(tmp_path, segment_max_records=3), "w") as store:
        for user in range(10):
            store.append("recommendation", recommendation(user))
    segments = list_segments(tmp_path)[0]["w"]
    assert [s.name.segno for s in segments] == [0, 1, 2, 3]
    seals = [read_seal(s) for s in segments]
    assert all(seal is not None and seal_signature_ok(KEY.encode(), seal) for seal in seals)
    assert [seal["records"] for seal in seals] == [3, 3, 3, 1]
    assert [seal["reason"] for seal in seals] == ["roll-size"] * 3 + ["close"]
    for previous, seal, segment in zip(seals, seals[1:], segments[1:], strict=False):
        first = json.loads(segment.path.read_bytes().splitlines()[0])
        assert first["prev"] == previous["last_hash"] == seal["prev_hash"]
        assert first["seq"] == previous["last_seq"] + 1
    assert verify(tmp_path, KEY).ok


def test_segments_roll_at_utc_midnight(tmp_path: Path) -> None:
    clock = clock_at(datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC), step=timedelta(milliseconds=300))
    with LogStore(make_config(tmp_path), "w", clock=clock) as store:
        receipts = [store.append("recommendation", recommendation(1)) for _ in range(6)]
    segments = list_segments(tmp_path)[0]["w"]
    assert len(segments) == 2
    assert read_seal(segments[0])["reason"] == "roll-day"
    days = [{json.loads(line)["ts"][:10] for line in s.path.read_bytes().splitlines()} for s in segments]
    assert days == [{"2025-03-01"}, {"2025-03-02"}]
    assert {r.segment for r in receipts} == {s.path.name for s in segments}
    assert verify(tmp_path, KEY).ok


def test_reopening_a_named_stream_continues_its_chain(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with LogStore(config, "w") as store:
        first = store.append("recommendation", recommendation(1))
    with LogStore(config, "w") as store:
        second = store.append("recommendation", recommendation(2))
    assert second.seq == first.seq + 1
    assert read_entries(tmp_path, "w")[1]["prev"] == first.hash
    assert verify(tmp_path, KEY).ok


def test_lookup_returns_the_record_only_to_its_user(tmp_path: Path) -> None:
    with LogStore(make_config(tmp_path, segment_max_records=7), "w") as store:
        ids = []
        for user in range(30):
            request_id = new_request_id()
            ids.append(request_id)
            store.append("recommendation", recommendation(user, request_id))
            store.append("intervention", {"request_id": request_id, "user_id": user})
        assert store.lookup(ids[17], 17)["user_id"] == 17
        assert store.lookup(ids[17], "17")["request_id"] == ids[17]
        assert store.lookup(ids[17], 18) is None
        assert store.lookup(new_request_id(), 17) is None
        with pytest.raises(ValueError, match="request_id"):
            store.lookup("not-an-id", 17)
        with pytest.raises(ValueError, match="version 7"):
            store.lookup(str(uuid.uuid4()), 17)


def test_lookup_finds_records_across_many_days_and_streams(tmp_path: Path) -> None:
    expected = {}
    for stream in ("a", "b"):
        now = {"at": datetime(2025, 1, 1, tzinfo=UTC)}
        clock = lambda: int(now["at"].timestamp() * 1e9)  # noqa: E731 - the test moves time by hand
        with LogStore(make_config(tmp_path, segment_max_records=50), stream, clock=clock) as store:
            for user in range(200):  # 5 h apart: ~40 days, one segment per day
                now["at"] += timedelta(hours=5)
                request_id = new_request_id(at=now["at"] - timedelta(seconds=2))
                store.append("recommendation", recommendation(user, request_id))
                if user % 37 == 0:
                    expected[request_id] = user
    assert len(list_segments(tmp_path)[0]["a"]) > 30
    for request_id, user in expected.items():
        found = lookup(tmp_path, request_id, user)
        assert found is not None and found["request_id"] == request_id
        assert lookup(tmp_path, request_id, user + 1) is None


def test_lookup_binary_searches_inside_a_large_segment(tmp_path: Path) -> None:
    now = {"at": datetime(2025, 1, 1, tzinfo=UTC)}
    clock = lambda: int(now["at"].timestamp() * 1e9)  # noqa: E731
    with LogStore(make_config(tmp_path, lookup_window_s=5), "w", clock=clock) as store:
        ids = []
        for user in range(2000):
            now["at"] += timedelta(seconds=1)
            ids.append(new_request_id(at=now["at"]))
            store.append("recommendation", recommendation(user, ids[-1]))
        assert len(list_segments(tmp_path)[0]["w"]) == 1
        for user in (0, 1, 2, 777, 1000, 1998, 1999):
            assert store.lookup(ids[user], user)["request_id"] == ids[user]


def test_concurrent_threads_keep_one_valid_chain(tmp_path: Path) -> None:
    receipts = []
    with LogStore(make_config(tmp_path, segment_max_records=300), "w") as store:

        def work(worker: int) -> None:
            for i in range(400):
                receipts.append(store.append("recommendation", recommendation(worker * 1000 + i)))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    entries = read_entries(tmp_path, "w")
    assert [e["seq"] for e in entries] == list(range(1, 1601))
    assert {(r.seq, r.hash) for r in receipts} == {(e["seq"], e["hash"]) for e in entries}
    report = verify(tmp_path, KEY)
    assert report.ok, report.summary
    assert report.records == 1600 and report.segments == 6


def test_append_async_inline_and_on_writer_thread(tmp_path: Path) -> None:
    async def run(store: LogStore) -> list:
        return await asyncio.gather(*(store.append_async("recommendation", recommendation(u)) for u in range(20)))

    for fsync in ("group", "always"):
        with LogStore(make_config(tmp_path / fsync, fsync=fsync), "w") as store:
            receipts = asyncio.run(run(store))
        assert sorted(r.seq for r in receipts) == list(range(1, 21))
        assert verify(tmp_path / fsync, KEY).ok


def test_missing_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    with LogStore(make_config(target), "w") as store:
        store.append("recommendation", recommendation(1))
    assert verify(target, KEY).ok


@pytest.mark.parametrize(
    ("make_dir", "message"),
    [
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "not a directory"),
        (lambda tmp: Path("/proc/self"), "not writable"),
    ],
)
def test_unusable_directory_raises_unavailable(tmp_path: Path, make_dir, message: str) -> None:
    with pytest.raises(LogStoreUnavailable, match=message):
        LogStore(make_config(make_dir(tmp_path)), "w")


def test_low_disk_space_raises_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LogStoreUnavailable, match="min_free_mb"):
        LogStore(make_config(tmp_path, min_free_mb=10**12), "w")


def test_a_stream_has_one_writer(tmp_path: Path) -> None:
    with LogStore(make_config(tmp_path), "w"):
        with pytest.raises(LogStoreUnavailable, match="held by another writer"):
            LogStore(make_config(tmp_path), "w")


def test_failed_appends_raise_and_write_nothing(tmp_path: Path) -> None:
    store = LogStore(make_config(tmp_path), "w")
    store.append("recommendation", recommendation(1))
    with pytest.raises(LogStoreError, match="not JSON serialisable"):
        store.append("recommendation", {"user_id": object()})
    with pytest.raises(ValueError, match="kind"):
        store.append("Bad Kind", {})
    store.close()
    with pytest.raises(LogStoreUnavailable, match="closed"):
        store.append("recommendation", recommendation(2))
    assert len(read_entries(tmp_path, "w")) == 1
    assert verify(tmp_path, KEY).ok


def test_numpy_values_are_stored_as_json(tmp_path: Path) -> None:
    import numpy as np

    with LogStore(make_config(tmp_path), "w") as store:
        store.append("recommendation", {"score": np.float32(0.5), "ids": np.arange(3), "n": np.int64(4)})
    assert read_entries(tmp_path, "w")[0]["data"] == {"score": 0.5, "ids": [0, 1, 2], "n": 4}


def test_retention_below_six_months_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"minimum of 180 days.*Art\. 28 \(draft 24\)"):
        LogConfig(retention_days=179)
    assert LogConfig(retention_days=365).retention_days == 365


def test_short_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 16 bytes"):
        LogConfig(hmac_key="short")


def test_default_key_logs_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="compliance.logstore.store"):
        LogStore(LogConfig(dir=tmp_path), "w").close()
    assert "development HMAC key" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="compliance.logstore.store"):
        LogStore(make_config(tmp_path), "w2").close()
    assert "development HMAC key" not in caplog.text


def test_default_stream_names_are_unique_per_store(tmp_path: Path) -> None:
    first, second = LogStore(make_config(tmp_path)), LogStore(make_config(tmp_path))
    assert first.stream != second.stream
    first.close()
    second.close()


def test_request_ids_are_uuid7_and_time_ordered() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    ids = [new_request_id(at=before + timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert abs(request_id_time(new_request_id()) - datetime.now(UTC)) < timedelta(seconds=1)


def test_verify_accepts_a_live_stream_and_its_open_segment(tmp_path: Path) -> None:
    store = LogStore(make_config(tmp_path, segment_max_records=4), "live")
    for user in range(10):
        store.append("recommendation", recommendation(user))
    report = verify(tmp_path, KEY)
    assert report.ok, report.summary
    assert report.records == 10
    store.close()


def test_group_commit_fsyncs_within_its_window(tmp_path: Path) -> None:
    import time

    with LogStore(make_config(tmp_path, group_commit_ms=5), "w") as store:
        for user in range(50):
            store.append("recommendation", recommendation(user))
        deadline = time.monotonic() + 2
        while store._synced < store._written and time.monotonic() < deadline:
            time.sleep(0.005)
        assert store._synced == store._written == 50
