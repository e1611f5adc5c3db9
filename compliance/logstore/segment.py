"""On-disk format of the log store (Art. 28 (draft 24)): segment names, keyed hash-chained lines, seals, locks.

A line is the canonical JSON of one entry, with its HMAC appended as the last key:
    {"seq":7,"ts":"2024-03-01T12:00:00.000001Z","kind":"recommendation","prev":"<hex>","data":{...},"hash":"<hex>"}
hash = HMAC-SHA256(key, prev || canonical), canonical being the line without `,"hash":...` (closed
with "}"), so a verifier needs no re-serialisation and any changed byte breaks the chain. `data`
is written with sorted keys and compact separators. Everything else in the directory (seals,
ledger) is signed with the same key so nobody without it can rewrite history unnoticed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEGMENT_SUFFIX = ".jsonl"
SEAL_SUFFIX = ".seal"
CORRUPT_SUFFIX = ".corrupt"
LOCK_DIR = "locks"
PARQUET_DIR = "parquet"

STREAM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SEGMENT_NAME_RE = re.compile(
    r"^(?P<stream>[A-Za-z0-9][A-Za-z0-9_.-]{0,99})__(?P<segno>\d{6,})__"
    r"(?P<start>\d{8}T\d{6}\.\d{6}Z)\.jsonl$"
)
LINE_PREFIX_RE = re.compile(
    rb'^\{"seq":(\d{1,19}),"ts":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)",'
    rb'"kind":"([a-z][a-z0-9_-]{0,31})","prev":"([0-9a-f]{64})","data":'
)
HASH_HEAD = b',"hash":"'
HASH_SUFFIX_LEN = len(HASH_HEAD) + 64 + 2  # ,"hash":"<64 hex>"}
_HEX = frozenset(b"0123456789abcdef")


class LogStoreError(Exception):
    """A log operation failed; the record was not (fully) stored."""


class LogStoreUnavailable(LogStoreError):
    """The store cannot write (directory unwritable, disk full, stream held, I/O error).

    Serving refuses to answer rather than serve a list it cannot log (Art. 28 (draft 24)).
    """


# --- names -----------------------------------------------------------------------------------


def check_stream_name(stream: str) -> str:
    """Return `stream` or raise ValueError naming the allowed characters."""
    if not STREAM_RE.match(stream) or "__" in stream:
        raise ValueError(
            f"stream: {stream!r} must be 1-100 characters of A-Z a-z 0-9 _ . - , start with a "
            "letter or digit and not contain '__'"
        )
    return stream


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValueError(f"kind: {kind!r} must match {KIND_RE.pattern}")
    return kind


def default_stream_name(prefix: str = "") -> str:
    """A stream name unique to this process: [prefix-]host-pid-starttime-random."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40].strip("-.") or "host"
    start = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"{host}-{os.getpid()}-{start}-{os.urandom(2).hex()}"
    return check_stream_name(f"{prefix}-{name}" if prefix else name)


@dataclass(frozen=True, slots=True)
class SegmentName:
    """A segment file name: <stream>__<segno>__<start UTC>.jsonl."""

    stream: str
    segno: int
    start: datetime

    @property
    def file_name(self) -> str:
        return f"{self.stream}__{self.segno:06d}__{self.start.strftime('%Y%m%dT%H%M%S.%fZ')}{SEGMENT_SUFFIX}"

    @classmethod
    def parse(cls, file_name: str) -> SegmentName | None:
        match = SEGMENT_NAME_RE.match(file_name)
        if match is None:
            return None
        start = datetime.strptime(match["start"], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
        return cls(match["stream"], int(match["segno"]), start)


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """A segment on disk with its parsed name."""

    path: Path
    name: SegmentName

    @property
    def seal_path(self) -> Path:
        return self.path.with_name(self.path.name + SEAL_SUFFIX)

    @property
    def corrupt_path(self) -> Path:
        return self.path.with_name(self.path.name + CORRUPT_SUFFIX)


def list_segments(directory: Path) -> tuple[dict[str, list[SegmentFile]], list[Path]]:
    """Segments of every stream sorted by segment number, and *.jsonl files that are not segments."""
    streams: dict[str, list[SegmentFile]] = {}
    strangers: list[Path] = []
    if not directory.is_dir():
        return streams, strangers
    for entry in os.scandir(directory):
        if not entry.name.endswith(SEGMENT_SUFFIX) or entry.name == LEDGER_NAME:
            continue
        name = SegmentName.parse(entry.name)
        if name is None:
            strangers.append(Path(entry.path))
            continue
        streams.setdefault(name.stream, []).append(SegmentFile(Path(entry.path), name))
    for segments in streams.values():
        segments.sort(key=lambda s: s.name.segno)
    return streams, sorted(strangers)


# --- keyed hashing -----------------------------------------------------------------------------


def genesis_hash(key: bytes, stream: str) -> bytes:
    """The `prev` of the first record a stream ever writes."""
    return hmac.new(key, b"genesis:" + stream.encode(), hashlib.sha256).hexdigest().encode()


def sign(key: bytes, payload: dict[str, Any]) -> str:
    """HMAC of a JSON-able dict (sorted keys) used for seals, proofs and ledger-free sidecars."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, b"sig:" + body, hashlib.sha256).hexdigest()


def encode_canonical(seq: int, ts: str, kind: str, prev: bytes, data_json: bytes) -> bytes:
    return b'{"seq":%d,"ts":"%s","kind":"%s","prev":"%s","data":%s}' % (
        seq,
        ts.encode(),
        kind.encode(),
        prev,
        data_json,
    )


def line_from_canonical(canonical: bytes, digest_hex: bytes) -> bytes:
    return canonical[:-1] + HASH_HEAD + digest_hex + b'"}\n'


@dataclass(frozen=True, slots=True)
class LineHead:
    """Envelope fields of one line, parsed without decoding `data`."""

    seq: int
    ts: str
    kind: str
    prev: bytes
    hash: bytes
    canonical: bytes


def parse_line(line: bytes) -> LineHead | None:
    """Parse one line (without its newline); None when it is not in the store's format."""
    match = LINE_PREFIX_RE.match(line)
    if match is None or len(line) < match.end() + HASH_SUFFIX_LEN + 1:
        return None
    tail = line[-HASH_SUFFIX_LEN:]
    digest = tail[len(HASH_HEAD) : len(HASH_HEAD) + 64]
    if not tail.startswith(HASH_HEAD) or not tail.endswith(b'"}') or not _HEX.issuperset(digest):
        return None
    return LineHead(
        seq=int(match[1]),
        ts=match[2].decode(),
        kind=match[3].decode(),
        prev=match[4],
        hash=digest,
        canonical=line[:-HASH_SUFFIX_LEN] + b"}",
    )


def line_mac(key_mac: hmac.HMAC, prev: bytes, canonical: bytes) -> bytes:
    """HMAC(key, prev || canonical) as hex bytes; `key_mac` is a pre-keyed hmac object to copy."""
    mac = key_mac.copy()
    mac.update(prev)
    mac.update(canonical)
    return mac.hexdigest().encode()


def keyed_mac(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def parse_ts(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def format_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- seals ------------------------------------------------------------------------------------


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to `path` via a temp file + rename + directory fsync (all or nothing)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(payload, sort_keys=True, indent=1).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_seal(key: bytes, segment: SegmentFile, scan: SegmentScan, reason: str) -> dict[str, Any]:
    """The signed summary of a finished segment."""
    body = {
        "v": 1,
        "segment": segment.path.name,
        "stream": segment.name.stream,
        "segno": segment.name.segno,
        "records": scan.records,
        "first_seq": scan.first_seq,
        "last_seq": scan.last_seq,
        "first_ts": scan.first_ts,
        "last_ts": scan.last_ts,
        "prev_hash": scan.prev_in.decode(),
        "last_hash": scan.last_hash.decode(),
        "sha256": scan.sha256,
        "bytes": scan.size,
        "reason": reason,
        "sealed_at": format_ts(datetime.now(UTC)),
    }
    return {**body, "sig": sign(key, body)}


def seal_signature_ok(key: bytes, seal: dict[str, Any]) -> bool:
    body = {k: v for k, v in seal.items() if k != "sig"}
    return isinstance(seal.get("sig"), str) and hmac.compare_digest(sign(key, body), seal["sig"])


def read_seal(segment: SegmentFile) -> dict[str, Any] | None:
    """The seal sidecar as a dict, None when absent; ValueError when unreadable."""
    try:
        raw = segment.seal_path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        seal = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{segment.seal_path.name}: not valid JSON ({exc})") from exc
    if not isinstance(seal, dict):
        raise ValueError(f"{segment.seal_path.name}: not a JSON object")
    return seal


# --- scanning ---------------------------------------------------------------------------------


@dataclass(slots=True)
class SegmentScan:
    """What a writer needs to resume or seal a segment: counts, chain ends, digest, partial tail."""

    records: int
    first_seq: int | None
    last_seq: int | None
    first_ts: str | None
    last_ts: str | None
    prev_in: bytes
    last_hash: bytes
    sha256: str
    size: int
    partial: bytes
    sha_state: Any


def scan_segment(path: Path, prev_in: bytes) -> SegmentScan:
    """Read a segment written by this store: complete lines, their chain ends, and any partial tail.

    `prev_in` is the hash the segment's first record must link to (used when it is empty).
    Raises LogStoreUnavailable when the first or last complete line is not a store line.
    """
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    complete, partial = data[:end], data[end:]
    sha = hashlib.sha256(complete)
    records = complete.count(b"\n")
    first_seq = last_seq = None
    first_ts = last_ts = None
    last_hash = prev_in
    if records:
        first_line = complete[: complete.find(b"\n")]
        last_line = complete[complete.rfind(b"\n", 0, end - 1) + 1 : end - 1]
        first, last = parse_line(first_line), parse_line(last_line)
        if first is None or last is None:
            bad = 1 if first is None else records
            raise LogStoreUnavailable(
                f"{path}: line {bad} is not a log record; run `recsys logs verify` to locate the damage"
            )
        first_seq, first_ts, prev_in = first.seq, first.ts, first.prev
        last_seq, last_ts, last_hash = last.seq, last.ts, last.hash
    return SegmentScan(
        records=records,
        first_seq=first_seq,
        last_seq=last_seq,
        first_ts=first_ts,
        last_ts=last_ts,
        prev_in=prev_in,
        last_hash=last_hash,
        sha256=sha.hexdigest(),
        size=len(complete),
        partial=partial,
        sha_state=sha,
    )


def iter_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without newline) for every complete line of `data`."""
    start = 0
    number = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return
        number += 1
        yield number, data[start:end]
        start = end + 1


# --- locks: one live writer per stream --------------------------------------------------------


def lock_path(directory: Path, stream: str) -> Path:
    return directory / LOCK_DIR / f"{stream}.lock"


def try_lock_stream(directory: Path, stream: str) -> int | None:
    """Take the stream's exclusive lock; the fd holding it, or None when another process holds it."""
    path = lock_path(directory, stream)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def release_lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def stream_is_live(directory: Path, stream: str) -> bool:
    """True while some process holds the stream open for writing."""
    if not lock_path(directory, stream).exists():
        return False
    fd = try_lock_stream(directory, stream)
    if fd is None:
        return True
    release_lock(fd)
    return False


LEDGER_NAME = "ledger.jsonl"


def parquet_path(directory: Path, segment: SegmentName) -> Path:
    """Where `compact` writes a segment's Parquet copy: parquet/date=YYYY-MM-DD/<stem>.parquet."""
    stem = segment.file_name[: -len(SEGMENT_SUFFIX)]
    return directory / PARQUET_DIR / f"date={segment.start:%Y-%m-%d}" / f"{stem}.parquet"
