"""The directory ledger (Art. 28 (draft 24)): which streams exist and which segments were purged, signed.

One small hash-chained file, `ledger.jsonl`, in the same line format as the segments, written
under an exclusive flock by every process. It lets `verify` tell a stream or segment deleted by
`purge` (recorded here, within retention rules) from one deleted by hand (not recorded: tampering).
Entries: kind "open" {stream}, kind "purge" {stream, through_segno, last_seq, last_hash, complete},
kind "repair" {bytes, corrupt_file} when a crash left a partial ledger line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compliance.logstore.segment import (
    CORRUPT_SUFFIX,
    LEDGER_NAME,
    encode_canonical,
    format_ts,
    genesis_hash,
    iter_lines,
    keyed_mac,
    line_from_canonical,
    line_mac,
    parse_line,
)

GENESIS_LABEL = "ledger"


@dataclass(frozen=True, slots=True)
class PurgeMark:
    """How far a stream was purged: segments up to `through_segno` are gone on purpose."""

    through_segno: int
    last_seq: int | None
    last_hash: str
    complete: bool


@dataclass(slots=True)
class LedgerState:
    """What the ledger says, and where it is damaged (1-based line, reason)."""

    streams: set[str] = field(default_factory=set)
    purged: dict[str, PurgeMark] = field(default_factory=dict)
    problems: list[tuple[int, int | None, str]] = field(default_factory=list)
    entries: int = 0
    partial_tail: bool = False


def ledger_path(directory: Path) -> Path:
    return directory / LEDGER_NAME


def _genesis(key: bytes) -> bytes:
    # "__" cannot start a stream name, so the ledger's chain never collides with a stream's.
    return genesis_hash(key, "__" + GENESIS_LABEL)


def read_ledger(directory: Path, key: bytes, check: bool = True) -> LedgerState:
    """Parse (and with `check`, verify the chain of) the ledger."""
    state = LedgerState()
    path = ledger_path(directory)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return state
    mac = keyed_mac(key)
    expected_prev: bytes | None = _genesis(key)
    expected_seq: int | None = 1
    state.partial_tail = not data.endswith(b"\n") and bool(data)
    for number, line in iter_lines(data):
        head = parse_line(line)
        if head is None:
            state.problems.append((number, None, "malformed ledger line"))
            expected_prev = expected_seq = None
            continue
        state.entries += 1
        if check:
            if expected_seq is not None and head.seq != expected_seq:
                state.problems.append((number, head.seq, f"seq {head.seq} where {expected_seq} expected"))
            elif expected_prev is not None and head.prev != expected_prev:
                state.problems.append((number, head.seq, "prev hash does not match the previous entry"))
            if line_mac(mac, head.prev, head.canonical) != head.hash:
                state.problems.append((number, head.seq, "hash mismatch (entry edited or forged)"))
        expected_prev, expected_seq = head.hash, head.seq + 1
        entry = json.loads(line)["data"]
        if head.kind == "open":
            state.streams.add(entry["stream"])
        elif head.kind == "purge":
            state.streams.add(entry["stream"])
            state.purged[entry["stream"]] = PurgeMark(
                through_segno=entry["through_segno"],
                last_seq=entry["last_seq"],
                last_hash=entry["last_hash"],
                complete=entry["complete"],
            )
    return state


class Ledger:
    """An open, locked ledger; append entries while holding it (see `locked_ledger`)."""

    def __init__(self, fd: int, directory: Path, key: bytes) -> None:
        self._fd = fd
        self._directory = directory
        self._key = key
        self._mac = keyed_mac(key)
        self._seq, self._prev = self._tail()

    def _tail(self) -> tuple[int, bytes]:
        """Next seq and prev hash; a partial last line (crash mid-write) is moved aside first."""
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size, 0) if size else b""
        end = data.rfind(b"\n") + 1
        seq, prev = self._last_of(data[:end])
        if end == size:
            return seq, prev
        corrupt = ledger_path(self._directory).with_name(LEDGER_NAME + CORRUPT_SUFFIX)
        with open(corrupt, "ab") as sidecar:
            sidecar.write(data[end:])
            sidecar.flush()
            os.fsync(sidecar.fileno())
        os.ftruncate(self._fd, end)
        os.fsync(self._fd)
        self._seq, self._prev = seq, prev
        self.append("repair", {"bytes": size - end, "corrupt_file": corrupt.name})
        return self._seq, self._prev

    def _last_of(self, data: bytes) -> tuple[int, bytes]:
        if not data:
            return 1, _genesis(self._key)
        last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
        head = parse_line(last)
        if head is None:
            raise ValueError(f"{ledger_path(self._directory)}: last line is not a ledger entry")
        return head.seq + 1, head.hash

    def append(self, kind: str, entry: dict[str, Any]) -> None:
        data_json = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        ts = format_ts_now()
        canonical = encode_canonical(self._seq, ts, kind, self._prev, data_json)
        digest = line_mac(self._mac, self._prev, canonical)
        os.write(self._fd, line_from_canonical(canonical, digest))
        os.fsync(self._fd)
        self._seq, self._prev = self._seq + 1, digest


def format_ts_now() -> str:
    return format_ts(datetime.now(UTC))


@contextmanager
def locked_ledger(directory: Path, key: bytes) -> Iterator[Ledger]:
    """Hold the ledger's exclusive lock (across processes) for a series of appends."""
    fd = os.open(ledger_path(directory), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield Ledger(fd, directory, key)
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
