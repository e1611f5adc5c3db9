"""verify (Art. 28 (draft 24)): every kind of tampering is caught and the first bad place is named."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.logstore import LogConfig, LogStore, verify
from compliance.logstore.segment import (
    SegmentFile,
    keyed_mac,
    line_from_canonical,
    line_mac,
    list_segments,
    parse_line,
)

KEY = "test-key-0123456789abcdef"


def build(directory: Path, records: int = 17, per_segment: int = 5, stream: str = "w", close: bool = True):
    store = LogStore(LogConfig(dir=directory, hmac_key=KEY, segment_max_records=per_segment), stream)
    for i in range(records):
        store.append("recommendation", {"request_id": f"r{i}", "user_id": i % 4, "items": [{"item_id": i}]})
    if close:
        store.close()
    return store


def segments(directory: Path, stream: str = "w") -> list[SegmentFile]:
    return list_segments(directory)[0][stream]


def lines(segment: SegmentFile) -> list[bytes]:
    return segment.path.read_bytes().splitlines(keepends=True)


def write_lines(segment: SegmentFile, new_lines: list[bytes]) -> None:
    segment.path.write_bytes(b"".join(new_lines))


def seq_of(line: bytes) -> int:
    return json.loads(line)["seq"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pristine")
    build(directory)  # segments 0..3 with 5, 5, 5, 2 records, all sealed
    return directory


@pytest.fixture
def logs(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "logs"
    shutil.copytree(pristine, target)
    return target


def first_problem(directory: Path):
    report = verify(directory, KEY)
    assert not report.ok
    assert "TAMPERED" in report.summary
    return report.first


def test_pristine_logs_verify(logs: Path) -> None:
    report = verify(logs, KEY)
    assert report.ok, report.summary
    assert (report.streams, report.segments, report.records) == (1, 4, 17)


def test_wrong_key_fails_everywhere(logs: Path) -> None:
    report = verify(logs, "another-key-0123456789")
    assert not report.ok


def test_flipped_byte_names_the_record(logs: Path) -> None:
    segment = segments(logs)[1]
    content = lines(segment)
    content[2] = content[2].replace(b'"user_id":3', b'"user_id":4')
    write_lines(segment, content)
    problem = first_problem(logs)
    assert (problem.segment, problem.line, problem.seq) == (segment.path.name, 3, 8)
    assert "edited" in problem.reason


def test_deleted_record_is_named(logs: Path) -> None:
    segment = segments(logs)[1]
    content = lines(segment)
    del content[2]
    write_lines(segment, content)
    problem = first_problem(logs)
    assert (problem.segment, problem.line, problem.seq) == (segment.path.name, 3, 9)
    assert "missing" in problem.reason


def test_inserted_record_is_named(logs: Path) -> None:
    segment = segments(logs)[2]
    content = lines(segment)
    content.insert(1, content[0])  # a replayed copy of a genuine record
    write_lines(segment, content)
    problem = first_problem(logs)
    assert (problem.segment, problem.line) == (segment.path.name, 2)


def test_record_rehashed_without_the_key_is_named(logs: Path) -> None:
    """An attacker edits a record and recomputes its hash and the rest of the chain with a guessed key."""
    target = segments(logs)[2]
    attacker = keyed_mac(b"attacker-guess-0123456789")
    content = lines(target)
    prev = parse_line(content[3][:-1]).prev
    for index in range(3, len(content)):
        head = parse_line(content[index][:-1])
        canonical = head.canonical.replace(b'"user_id":1', b'"user_id":9')
        canonical = canonical.replace(b'"prev":"' + head.prev + b'"', b'"prev":"' + prev + b'"')
        digest = line_mac(attacker, prev, canonical)
        content[index] = line_from_canonical(canonical, digest)
        prev = digest
    write_lines(target, content)
    problem = first_problem(logs)
    assert (problem.segment, problem.line, problem.seq) == (target.path.name, 4, 14)
    assert "hash mismatch" in problem.reason


def test_swapped_records_are_named(logs: Path) -> None:
    segment = segments(logs)[0]
    content = lines(segment)
    content[1], content[2] = content[2], content[1]
    write_lines(segment, content)
    problem = first_problem(logs)
    assert (problem.segment, problem.line, problem.seq) == (segment.path.name, 2, 3)


def test_deleted_middle_segment_is_named(logs: Path) -> None:
    middle, following = segments(logs)[1], segments(logs)[2]
    middle.path.unlink()
    middle.seal_path.unlink()
    problem = first_problem(logs)
    assert problem.segment == following.path.name
    assert "segment 1" in problem.reason and "missing" in problem.reason


def test_deleted_segment_keeping_its_seal_is_named(logs: Path) -> None:
    middle = segments(logs)[1]
    middle.path.unlink()
    report = verify(logs, KEY)
    assert any(p.segment == middle.path.name and "deleted" in p.reason for p in report.problems)


def test_deleted_last_segment_is_caught(logs: Path) -> None:
    last, before = segments(logs)[-1], segments(logs)[-2]
    last.path.unlink()
    last.seal_path.unlink()
    problem = first_problem(logs)
    assert problem.segment == before.path.name and "missing" in problem.reason


def test_swapped_segments_are_named(logs: Path) -> None:
    first, second = segments(logs)[0], segments(logs)[1]
    for a, b in ((first.path, second.path), (first.seal_path, second.seal_path)):
        tmp = a.with_name("swap.tmp")
        os.rename(a, tmp)
        os.rename(b, a)
        os.rename(tmp, b)
    problem = first_problem(logs)
    assert problem.segment == first.path.name


def test_edited_seal_is_named(logs: Path) -> None:
    segment = segments(logs)[1]
    seal = json.loads(segment.seal_path.read_text())
    seal["records"] = 4
    segment.seal_path.write_text(json.dumps(seal))
    problem = first_problem(logs)
    assert problem.segment == segment.seal_path.name and "signature" in problem.reason


@pytest.mark.parametrize("cut", ["line_boundary", "mid_line"])
def test_truncated_segment_is_named(logs: Path, cut: str) -> None:
    segment = segments(logs)[2]
    content = lines(segment)
    kept = b"".join(content[:3]) + (content[3][:40] if cut == "mid_line" else b"")
    segment.path.write_bytes(kept)
    problem = first_problem(logs)
    assert (problem.segment, problem.line, problem.seq) == (segment.path.name, 4, 14)
    assert "truncated" in problem.reason


def test_deleted_stream_is_caught(logs: Path, tmp_path: Path) -> None:
    build(logs, records=3, stream="other")
    assert verify(logs, KEY).ok
    for segment in segments(logs, "other"):
        segment.path.unlink()
        segment.seal_path.unlink()
    problem = first_problem(logs)
    assert "'other'" in problem.reason and "missing" in problem.reason


def test_segments_copied_in_from_elsewhere_are_caught(logs: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    build(elsewhere, records=3, stream="intruder")
    for path in elsewhere.glob("intruder__*"):
        shutil.copy(path, logs / path.name)
    problem = first_problem(logs)
    assert "not in the ledger" in problem.reason


def test_edited_ledger_is_caught(logs: Path) -> None:
    ledger = logs / "ledger.jsonl"
    content = ledger.read_bytes().splitlines(keepends=True)
    content[0] = content[0].replace(b'"stream":"w"', b'"stream":"x"')
    ledger.write_bytes(b"".join(content))
    problem = first_problem(logs)
    assert problem.segment == "ledger.jsonl" and problem.line == 1


def test_content_check_can_be_limited_to_some_segments(logs: Path) -> None:
    chosen = segments(logs)[2]
    other = segments(logs)[0]
    content = lines(other)
    content[0] = content[0].replace(b'"user_id":0', b'"user_id":1')
    write_lines(other, content)
    assert verify(logs, KEY, content={chosen.path.name}).ok  # trusted through its seal
    assert not verify(logs, KEY).ok


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_is_found_at_its_line(pristine: Path, data: st.DataObject) -> None:
    all_segments = segments(pristine)
    segment_index = data.draw(st.integers(0, len(all_segments) - 1), label="segment")
    content = lines(all_segments[segment_index])
    line_index = data.draw(st.integers(0, len(content) - 1), label="line")
    position = data.draw(st.integers(0, len(content[line_index]) - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor")
    with tempfile.TemporaryDirectory() as raw:
        copy = Path(raw) / "logs"
        shutil.copytree(pristine, copy)
        target = segments(copy)[segment_index]
        tampered = bytearray(lines(target)[line_index])
        tampered[position] ^= mask
        new_content = lines(target)
        new_content[line_index] = bytes(tampered)
        write_lines(target, new_content)
        problem = first_problem(copy)
        assert problem.segment == target.path.name
        assert problem.line == line_index + 1
