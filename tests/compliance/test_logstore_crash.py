"""Crash safety of the log store (Art. 28 (draft 24): no acknowledged record is lost or silently dropped).

Real processes are killed with SIGKILL and made to hit a file-size limit; partial last lines are
moved to a `.corrupt` sidecar and a "repair" record is appended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from compliance.logstore import LogConfig, LogStore, query, verify
from compliance.logstore.segment import list_segments

KEY = "test-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from compliance.logstore.config import LogConfig
    from compliance.logstore.store import LogStore

    config = LogConfig(dir=Path(sys.argv[1]), hmac_key=sys.argv[2], segment_max_records=int(sys.argv[3]))
    store = LogStore(config, sys.argv[4])
    i = 0
    while True:
        receipt = store.append("recommendation", {"request_id": f"r{i}", "user_id": i % 7, "pad": "x" * 300})
        sys.stdout.write(f"{receipt.seq} {receipt.hash}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def all_lines(directory: Path) -> set[tuple[int, str]]:
    found = set()
    for segments in list_segments(directory)[0].values():
        for segment in segments:
            for line in segment.path.read_bytes().splitlines():
                entry = json.loads(line)
                found.add((entry["seq"], entry["hash"]))
    return found


def test_sigkill_loses_no_acknowledged_record(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), KEY, "150", "victim"],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    receipts: list[tuple[int, str]] = []
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while len(receipts) < 1000 and time.monotonic() < deadline:
        seq, digest = process.stdout.readline().split()
        receipts.append((int(seq), digest.decode()))
    process.send_signal(signal.SIGKILL)
    rest = process.stdout.read().split(b"\n")  # receipts printed before the kill landed
    process.wait(timeout=10)
    receipts += [(int(s), d.decode()) for s, d in (line.split() for line in rest if line.count(b" ") == 1)]
    assert len(receipts) >= 1000

    assert set(receipts) <= all_lines(tmp_path)
    report = verify(tmp_path, KEY, repair=True)
    assert report.ok, report.summary
    assert all(seal.exists() for seal in (s.seal_path for s in list_segments(tmp_path)[0]["victim"]))


def test_partial_last_line_is_moved_aside_and_recorded_on_reopen(tmp_path: Path) -> None:
    config = LogConfig(dir=tmp_path, hmac_key=KEY)
    store = LogStore(config, "w")
    for i in range(3):
        store.append("recommendation", {"request_id": f"r{i}", "user_id": i})
    segment = store.current_segment
    store._abandon()  # the process dies without sealing...
    with open(segment, "ab") as handle:  # ...halfway through writing a line
        handle.write(b'{"seq":4,"ts":"2025-01-01T00:00:00.000000Z","kind":"recommendation","prev":"ab')
    report = verify(tmp_path, KEY)
    assert not report.ok
    assert (report.first.segment, report.first.line, report.first.seq) == (segment.name, 4, 4)
    assert "partial last line" in report.first.reason

    with LogStore(config, "w") as reopened:
        receipt = reopened.append("recommendation", {"request_id": "r4", "user_id": 4})
    assert receipt.seq == 5
    corrupt = segment.with_name(segment.name + ".corrupt")
    assert corrupt.read_bytes().startswith(b'{"seq":4,"ts":"2025')
    repair = query(tmp_path, kind="repair").row(0, named=True)
    details = json.loads(repair["extra"])
    assert details["line"] == 4 and details["corrupt_file"] == corrupt.name and details["bytes"] > 0
    assert verify(tmp_path, KEY).ok


def test_verify_repair_fixes_a_dead_default_named_stream(tmp_path: Path) -> None:
    store = LogStore(LogConfig(dir=tmp_path, hmac_key=KEY))
    store.append("recommendation", {"user_id": 1})
    segment = store.current_segment
    store._abandon()
    with open(segment, "ab") as handle:
        handle.write(b'{"seq":2,"ts":')
    report = verify(tmp_path, KEY, repair=True)
    assert report.ok, report.summary
    assert any("sealed" in note for note in report.notes)
    assert segment.with_name(segment.name + ".corrupt").exists()
    assert query(tmp_path, kind="repair").height == 1


FILE_LIMIT_WRITER = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from compliance.logstore.config import LogConfig
    from compliance.logstore.segment import LogStoreUnavailable
    from compliance.logstore.store import LogStore

    store = LogStore(LogConfig(dir=Path(sys.argv[1]), hmac_key=sys.argv[2]), "limited")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    written = 0
    try:
        while True:
            store.append("recommendation", {"user_id": written, "pad": "y" * 700})
            written += 1
    except LogStoreUnavailable as exc:
        print(written, "disk full" in str(exc))
    """
)


def test_a_full_disk_fails_the_append_loudly_and_leaves_no_partial_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FILE_LIMIT_WRITER, str(tmp_path), KEY],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=True,
    )
    written, named = result.stdout.split()
    assert named == b"True"
    segment = list_segments(tmp_path)[0]["limited"][0]
    content = segment.path.read_bytes()
    assert content.endswith(b"\n") and content.count(b"\n") == int(written)
    report = verify(tmp_path, KEY, repair=True)
    assert report.ok, report.summary


def test_a_crash_between_roll_and_seal_is_repaired(tmp_path: Path) -> None:
    with LogStore(LogConfig(dir=tmp_path, hmac_key=KEY, segment_max_records=3), "w") as store:
        for i in range(8):
            store.append("recommendation", {"user_id": i})
    middle = list_segments(tmp_path)[0]["w"][1]
    middle.seal_path.unlink()  # the writer died after starting segment 2, before sealing segment 1
    report = verify(tmp_path, KEY)
    assert report.first.segment == middle.path.name and "crash during a roll" in report.first.reason
    assert verify(tmp_path, KEY, repair=True).ok
    assert json.loads(middle.seal_path.read_text())["reason"] == "repair"
