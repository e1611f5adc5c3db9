"""Tamper detection over log directories (Art. 28 (draft 24): the logs produced to authorities are intact).

`verify` re-computes every keyed chain hash and checks every seal, segment number, purge mark and
stream registration, and names the first bad place: segment file, line, seq and reason. It
catches edited, deleted, inserted and reordered records, deleted or swapped segments, edited
seals and truncated segments, and reports each stream (one writer's hash chain) on its own.
`verify_many` does that for the directories of several replicas, each with its own chains.
`repair_dead_streams` seals what crashed writers left open.

Limit (inherent to hash chains without an external anchor): the unsealed tail of a stream whose
writer died can be cut at a line boundary unnoticed; sealing (daily at the latest) bounds that.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compliance.logstore.config import config_for, key_bytes
from compliance.logstore.ledger import read_ledger
from compliance.logstore.segment import (
    LEDGER_NAME,
    SEAL_SUFFIX,
    LogStoreUnavailable,
    SegmentFile,
    SegmentName,
    genesis_hash,
    iter_lines,
    keyed_mac,
    line_mac,
    list_segments,
    parse_line,
    read_seal,
    seal_signature_ok,
    stream_is_live,
)
from compliance.logstore.store import LogStore


MAX_LISTED_PROBLEMS = 1000


@dataclass(frozen=True, slots=True)
class Problem:
    """One place where the log is not what its writer wrote."""

    segment: str
    line: int | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = self.segment + (f":{self.line}" if self.line is not None else "")
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"{where}{seq}: {self.reason}"


@dataclass(slots=True)
class StreamReport:
    """One stream's chain: what was checked and how many problems were found in it."""

    stream: str
    segments: int = 0
    records: int = 0
    problems: int = 0
    first: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def __str__(self) -> str:
        counts = f"{self.records} records in {self.segments} segments"
        if self.ok:
            return f"stream {self.stream}: OK, {counts}"
        return f"stream {self.stream}: {self.problems} problem(s) in {counts}; first: {self.first}"


@dataclass(slots=True)
class VerifyReport:
    """Outcome of `verify`; `problems` are in directory order, the first is the first bad place."""

    streams: int = 0
    segments: int = 0
    records: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems_not_listed: int = 0
    per_stream: dict[str, StreamReport] = field(default_factory=dict)

    @property
    def problem_count(self) -> int:
        return len(self.problems) + self.problems_not_listed

    def add(self, problem: Problem) -> None:
        """Record a problem; past MAX_LISTED_PROBLEMS (e.g. a wrong key) only count them."""
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(problem)
        else:
            self.problems_not_listed += 1

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def summary(self) -> str:
        counts = f"{self.records} records in {self.segments} segments of {self.streams} streams"
        if self.ok:
            return f"OK: {counts} verified"
        return f"TAMPERED OR DAMAGED: {self.problem_count} problem(s) in {counts}; first: {self.first}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary,
            "streams": self.streams,
            "segments": self.segments,
            "records": self.records,
            "problems": [
                {"segment": p.segment, "line": p.line, "seq": p.seq, "reason": p.reason}
                for p in self.problems
            ],
            "problems_not_listed": self.problems_not_listed,
            "notes": self.notes,
            "per_stream": {name: {"ok": r.ok, "segments": r.segments, "records": r.records, "problems": r.problems,
                                  "first": None if r.first is None else str(r.first)}
                           for name, r in self.per_stream.items()},
        }


@dataclass(slots=True)
class _Chain:
    """Where the next record of a stream must link: expected prev hash and seq (None: unknown)."""

    prev: bytes | None
    seq: int | None


def _check_lines(
    segment: SegmentFile, data: bytes, chain: _Chain, mac: Any, report: VerifyReport
) -> tuple[int, int | None, str | None]:
    """Check every complete line; returns (records, last seq, last ts) and advances `chain`."""
    name = segment.path.name
    records = 0
    last_seq: int | None = None
    last_ts: str | None = None
    for number, line in iter_lines(data):
        head = parse_line(line)
        if head is None:
            report.add(Problem(name, number, None, "malformed line (edited or corrupted)"))
            chain.prev = chain.seq = None
            continue
        records += 1
        if chain.seq is not None and head.seq != chain.seq:
            what = "missing" if head.seq > chain.seq else "duplicated or reordered"
            report.add(
                Problem(name, number, head.seq, f"seq {head.seq} where {chain.seq} expected (record {what})")
            )
        elif chain.prev is not None and head.prev != chain.prev:
            report.add(
                Problem(name, number, head.seq, "prev hash does not match the previous record (inserted, "
                        "deleted or reordered)")
            )
        if not hmac.compare_digest(line_mac(mac, head.prev, head.canonical), head.hash):
            report.add(Problem(name, number, head.seq, "hash mismatch (record edited or forged)"))
        if last_ts is not None and head.ts < last_ts:
            report.add(Problem(name, number, head.seq, "timestamp earlier than previous record"))
        chain.prev, chain.seq = head.hash, head.seq + 1
        last_seq, last_ts = head.seq, head.ts
    return records, last_seq, last_ts


def _check_seal(
    key: bytes,
    segment: SegmentFile,
    seal: dict[str, Any],
    prev_in: bytes | None,
    report: VerifyReport,
) -> bool:
    """Signature and identity of a seal; False when it cannot be trusted at all."""
    name = segment.path.name
    if not seal_signature_ok(key, seal):
        report.add(
            Problem(name + SEAL_SUFFIX, None, None, "seal signature invalid (seal edited or forged)")
        )
        return False
    if seal.get("segment") != name:
        report.add(
            Problem(name, None, None, f"seal belongs to {seal.get('segment')!r} (segments swapped or renamed)")
        )
        return False
    if prev_in is not None and seal.get("prev_hash", "").encode() != prev_in:
        report.add(
            Problem(name, 1, seal.get("first_seq"), "segment does not link to the previous segment "
                    "(a segment was deleted, inserted or swapped)")
        )
    return True


def _compare_with_seal(
    segment: SegmentFile,
    seal: dict[str, Any],
    complete: bytes,
    records: int,
    last_seq: int | None,
    partial: bytes,
    report: VerifyReport,
) -> None:
    name = segment.path.name
    sealed_records = int(seal.get("records") or 0)  # the signed seal's count (its signature was checked)
    if records < sealed_records or partial:
        next_seq = (last_seq + 1) if last_seq is not None else seal.get("first_seq")
        report.add(
            Problem(name, records + 1, next_seq, f"truncated: seal says {sealed_records} records "
                    f"(seq {seal.get('first_seq')}..{seal.get('last_seq')}), file has {records} complete"
                    + (" and a partial line" if partial else ""))
        )
    elif records > sealed_records:
        report.add(
            Problem(name, sealed_records + 1, None, f"records added after sealing ({records} > {sealed_records})")
        )
    elif hashlib.sha256(complete).hexdigest() != seal.get("sha256") or last_seq != seal.get("last_seq"):
        report.add(Problem(name, None, None, "content differs from its seal (sha256)"))


def verify(
    directory: Path,
    key: str | bytes | Any,
    *,
    repair: bool = False,
    content: Collection[str] | None = None,
) -> VerifyReport:
    """Verify every stream of `directory`; with `repair`, first seal/repair dead streams.

    `content` limits the line-by-line check to those segment file names (others are trusted
    through their signed seals); None checks every line.
    """
    key = key_bytes(key)
    directory = Path(directory)
    report = VerifyReport()
    if not directory.is_dir():
        report.add(Problem(str(directory), None, None, "log directory does not exist"))
        return report
    if repair:
        report.notes.extend(repair_dead_streams(directory, key))
    mac = keyed_mac(key)
    ledger = read_ledger(directory, key)
    for line, seq, reason in ledger.problems:
        report.add(Problem(LEDGER_NAME, line, seq, reason))
    if ledger.partial_tail:
        report.notes.append(f"{LEDGER_NAME}: partial last line (crash); the next writer moves it aside")
    streams, strangers = list_segments(directory)
    for path in strangers:
        report.add(Problem(path.name, None, None, "not a segment name of this store"))
    _check_orphan_seals(directory, streams, ledger.purged, report)
    for stream in sorted(set(streams) | ledger.streams):
        segments = streams.get(stream, [])
        if stream not in ledger.streams:
            report.add(
                Problem(segments[0].path.name, None, None, f"stream {stream!r} is not in the ledger "
                        "(segments copied in or ledger edited)")
            )
        mark = ledger.purged.get(stream)
        if not segments:
            if mark is None or not mark.complete:
                report.add(
                    Problem(LEDGER_NAME, None, None, f"stream {stream!r}: all its segments are missing "
                            "(deleted without a purge record)")
                )
            continue
        report.streams += 1
        before = (report.segments, report.records, report.problem_count, len(report.problems))
        _verify_stream(directory, key, mac, stream, segments, mark, content, report)
        found = report.problem_count - before[2]
        report.per_stream[stream] = StreamReport(
            stream, report.segments - before[0], report.records - before[1], found,
            report.problems[before[3]] if found and len(report.problems) > before[3] else None,
        )
    return report


@dataclass(slots=True)
class MultiVerifyReport:
    """`verify` of several log directories (one per replica): one report each, in the order given."""

    reports: dict[Path, VerifyReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports.values())

    @property
    def summary(self) -> str:
        totals = [sum(getattr(r, name) for r in self.reports.values()) for name in ("records", "segments", "streams")]
        counts = f"{totals[0]} records in {totals[1]} segments of {totals[2]} streams in {len(self.reports)} log directories"
        if self.ok:
            return f"OK: {counts} verified"
        bad = [str(d) for d, r in self.reports.items() if not r.ok]
        problems = sum(r.problem_count for r in self.reports.values())
        return f"TAMPERED OR DAMAGED: {problems} problem(s) in {counts}; in {', '.join(bad)}"

    def to_dict(self) -> dict[str, Any]:
        """Totals (the keys of `VerifyReport.to_dict`, problems prefixed with their directory) and each directory's report."""
        problems = [{**p, "log_dir": str(d)} for d, r in self.reports.items() for p in r.to_dict()["problems"]]
        return {
            "ok": self.ok,
            "summary": self.summary,
            "streams": sum(r.streams for r in self.reports.values()),
            "segments": sum(r.segments for r in self.reports.values()),
            "records": sum(r.records for r in self.reports.values()),
            "problems": problems,
            "problems_not_listed": sum(r.problems_not_listed for r in self.reports.values()),
            "notes": [f"{d}: {note}" for d, r in self.reports.items() for note in r.notes],
            "directories": {str(d): r.to_dict() for d, r in self.reports.items()},
        }


def verify_many(
    directories: Sequence[Path],
    key: str | bytes | Any,
    *,
    repair: bool = False,
    content: Mapping[Path, Collection[str]] | None = None,
) -> MultiVerifyReport:
    """`verify` each directory (each replica's own streams) with one key; `content` per directory as in `verify`."""
    result = MultiVerifyReport()
    for directory in directories:
        directory = Path(directory)
        names = None if content is None else content.get(directory, ())
        result.reports[directory] = verify(directory, key, repair=repair, content=names)
    return result


def _check_orphan_seals(
    directory: Path, streams: dict[str, list[SegmentFile]], purged: dict[str, Any], report: VerifyReport
) -> None:
    present = {s.path.name for segments in streams.values() for s in segments}
    for seal_path in sorted(directory.glob("*.jsonl" + SEAL_SUFFIX)):
        segment_name = seal_path.name[: -len(SEAL_SUFFIX)]
        if segment_name in present:
            continue
        name = SegmentName.parse(segment_name)
        mark = purged.get(name.stream) if name else None
        if name is not None and mark is not None and name.segno <= mark.through_segno:
            report.notes.append(f"{seal_path.name}: left over from an interrupted purge")
            continue
        report.add(Problem(segment_name, None, None, "segment deleted (its seal remains)"))


def _verify_stream(
    directory: Path,
    key: bytes,
    mac: Any,
    stream: str,
    segments: list[SegmentFile],
    mark: Any,
    content: Collection[str] | None,
    report: VerifyReport,
) -> None:
    live = stream_is_live(directory, stream)
    expected_segno = 0
    chain = _Chain(genesis_hash(key, stream), 1)
    if mark is not None:
        expected_segno = mark.through_segno + 1
        chain = _Chain(mark.last_hash.encode(), (mark.last_seq or 0) + 1)
        leftovers = [s for s in segments if s.name.segno <= mark.through_segno]
        if leftovers:
            report.notes.append(f"{stream}: {len(leftovers)} segment(s) purged in the ledger still on disk")
        segments = [s for s in segments if s.name.segno > mark.through_segno]
    for index, segment in enumerate(segments):
        name = segment.path.name
        is_last = index == len(segments) - 1
        report.segments += 1
        if segment.name.segno != expected_segno:
            if segment.name.segno > expected_segno:
                missing = f"segment {expected_segno}" + (
                    f"..{segment.name.segno - 1}" if segment.name.segno - 1 > expected_segno else ""
                )
                reason = f"{missing} of stream {stream!r} missing (deleted without a purge record)"
            else:
                reason = f"segment number {segment.name.segno} repeats or goes back (expected {expected_segno})"
            report.add(Problem(name, None, None, reason))
        expected_segno = segment.name.segno + 1
        try:
            seal = read_seal(segment)
        except ValueError as exc:
            report.add(Problem(name + SEAL_SUFFIX, None, None, f"unreadable seal: {exc}"))
            seal = None
        seal_ok = seal is not None and _check_seal(key, segment, seal, chain.prev, report)
        if seal is not None and seal_ok and content is not None and name not in content:
            # Trusted through its signed seal: link the chain without reading the lines.
            report.records += seal.get("records") or 0
            chain = _Chain(seal["last_hash"].encode(), (seal["last_seq"] or (chain.seq or 1) - 1) + 1)
            _check_roll_successor(seal, is_last, stream, name, report)
            continue
        data = segment.path.read_bytes()
        end = data.rfind(b"\n") + 1
        complete, partial = data[:end], data[end:]
        records, last_seq, _ = _check_lines(segment, complete, chain, mac, report)
        report.records += records
        if seal is not None and seal_ok:
            _compare_with_seal(segment, seal, complete, records, last_seq, partial, report)
            _check_roll_successor(seal, is_last, stream, name, report)
        elif seal is None:
            if partial and not (live and is_last):
                report.add(
                    Problem(name, records + 1, chain.seq, f"partial last line ({len(partial)} bytes, "
                            "crash mid-write); run `recsys logs verify --repair`")
                )
            if not is_last and not (live and index == len(segments) - 2):
                report.add(
                    Problem(name, None, None, "unsealed but followed by another segment (crash during "
                            "a roll); run `recsys logs verify --repair`")
                )
            if is_last and not live:
                report.notes.append(f"{name}: writer gone, segment unsealed (verify --repair seals it)")


def _check_roll_successor(
    seal: dict[str, Any], is_last: bool, stream: str, name: str, report: VerifyReport
) -> None:
    if is_last and str(seal.get("reason", "")).startswith("roll"):
        report.add(
            Problem(name, None, None, f"seal says stream {stream!r} rolled to a next segment, which is "
                    "missing (deleted)")
        )


def repair_dead_streams(directory: Path, key: bytes | str | Any) -> list[str]:
    """Seal the unsealed segments of streams whose writer is gone; repair partial last lines.

    Each is reopened as a LogStore under its own name (which moves a partial line to
    `<segment>.corrupt` and appends a "repair" record) and closed with a "repair" seal.
    Returns one note per stream repaired.
    """
    key = key_bytes(key)
    notes: list[str] = []
    streams, _ = list_segments(directory)
    for stream, segments in sorted(streams.items()):
        unsealed = [s for s in segments if not s.seal_path.exists()]
        if not unsealed or stream_is_live(directory, stream):
            continue
        config = config_for(directory, key, min_free_mb=0)
        try:
            store = LogStore(config, stream)
        except LogStoreUnavailable as exc:
            notes.append(f"{stream}: not repaired ({exc})")
            continue
        store.close(reason="repair")
        notes.append(f"{stream}: sealed {', '.join(s.path.name for s in unsealed)}")
    return notes
