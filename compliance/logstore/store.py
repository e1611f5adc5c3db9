"""Append-only, keyed hash-chained recommendation log (Art. 28 (draft 24): every served list is logged).

Each `LogStore` writes one stream (one per process by default: several uvicorn workers share a
directory) as JSON Lines segments `<stream>__<segno>__<start>.jsonl`, rolled every
`segment_max_records` records and at every UTC midnight, sealed on roll and on close.

Durability: `append` returns after `os.write` (the line survives kill -9). fsync "always" also
fsyncs before returning; "group" lets a background thread fsync at most every group_commit_ms,
so an OS crash or power loss loses at most the last group_commit_ms (+ one fsync) of
acknowledged records. A stream whose process died is repaired when it is reopened under the
same name, or by `recsys logs verify --repair`, purge or compact (see `repair_dead_streams`).
"""

from __future__ import annotations

import asyncio
import calendar
import errno
import hashlib
import json
import logging
import mmap
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from compliance.logstore.config import LogConfig
from compliance.logstore.ledger import locked_ledger, read_ledger
from compliance.logstore.segment import (
    LogStoreError,
    LogStoreUnavailable,
    SegmentFile,
    SegmentName,
    SegmentScan,
    check_kind,
    check_stream_name,
    default_stream_name,
    encode_canonical,
    fsync_dir,
    genesis_hash,
    keyed_mac,
    line_from_canonical,
    line_mac,
    list_segments,
    make_seal,
    parse_line,
    parse_ts,
    read_seal,
    release_lock,
    scan_segment,
    try_lock_stream,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that a record was written: where it is and the chain hash that covers it."""

    stream: str
    segment: str
    seq: int
    ts: str
    hash: str


def _json_default(value: Any) -> Any:
    """Serialise the few non-JSON types serving hands us (numpy scalars/arrays, datetimes, ids)."""
    if hasattr(value, "tolist"):  # numpy scalar or array
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_record(kind: str, record: dict[str, Any]) -> bytes:
    """Canonical JSON of a record's data (sorted keys, compact, ASCII)."""
    if not isinstance(record, dict):
        raise LogStoreError(f"record for kind {kind!r}: expected a dict, got {type(record).__name__}")
    try:
        return json.dumps(record, sort_keys=True, separators=(",", ":"), default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise LogStoreError(f"record for kind {kind!r} is not JSON serialisable: {exc}") from exc


def check_directory(directory: Path, min_free_mb: int) -> None:
    """Create the directory if missing; raise LogStoreUnavailable if it cannot take writes."""
    if directory.exists() and not directory.is_dir():
        raise LogStoreUnavailable(f"log dir {directory}: exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise LogStoreUnavailable(f"log dir {directory}: not writable ({exc.strerror or exc})") from exc
    free_mb = shutil.disk_usage(directory).free // (1024 * 1024)
    if free_mb < min_free_mb:
        raise LogStoreUnavailable(
            f"log dir {directory}: only {free_mb} MB free, below min_free_mb={min_free_mb}"
        )


class _Clock:
    """UTC wall clock in ns, never going backwards within a stream (keeps ts sorted per segment)."""

    def __init__(self, source: Callable[[], int]) -> None:
        self._source = source
        self._last = 0
        self._second = -1
        self._prefix = ""

    def not_before(self, ns: int) -> None:
        """Never hand out a time before `ns` (the last ts of a resumed segment)."""
        self._last = max(self._last, ns)

    def now_ns(self) -> int:
        now = self._source()
        self._last = now if now > self._last else self._last
        return self._last

    def format(self, ns: int) -> str:
        second, rest = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{rest // 1000:06d}Z"


class LogStore:
    """One writer of one stream; `append` is thread-safe, `append_async` suits the event loop."""

    def __init__(
        self,
        config: LogConfig,
        stream: str | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.stream = check_stream_name(stream) if stream else default_stream_name()
        self.dir = config.dir
        self._key = config.key()
        self._mac = keyed_mac(self._key)
        self._clock = _Clock(clock or time.time_ns)
        self._lock = threading.Lock()
        self._fsync_lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._failure: str | None = None
        self._fd = -1
        self._written = 0  # records written; compared with _synced by the group-commit thread
        self._synced = 0
        self._executor: ThreadPoolExecutor | None = None
        if config.uses_dev_key:
            logger.warning(
                "log store %s uses the built-in development HMAC key: anyone can rewrite its "
                "hash chain; set a secret key (RECSYS_LOG_HMAC_KEY) in production",
                self.dir,
            )
        check_directory(self.dir, config.min_free_mb)
        lock_fd = try_lock_stream(self.dir, self.stream)
        if lock_fd is None:
            raise LogStoreUnavailable(f"stream {self.stream!r} in {self.dir} is held by another writer")
        self._lock_fd = lock_fd
        try:
            self._open_stream()
            with locked_ledger(self.dir, self._key) as ledger:
                ledger.append("open", {"stream": self.stream, "pid": self._pid})
        except OSError as exc:
            self._abandon()
            raise LogStoreUnavailable(f"log dir {self.dir}: cannot open stream ({exc})") from exc
        except BaseException:
            self._abandon()
            raise
        self._stop = threading.Event()
        self._fsync_thread: threading.Thread | None = None
        if config.fsync == "group":
            self._fsync_thread = threading.Thread(
                target=self._group_commit, name=f"logstore-fsync-{self.stream}", daemon=True
            )
            self._fsync_thread.start()

    # --- opening and recovery ---------------------------------------------------------------

    def _open_stream(self) -> None:
        """Resume the stream: seal stale segments, repair a partial tail, or start a new segment."""
        segments = list_segments(self.dir)[0].get(self.stream, [])
        prev, next_seq, next_segno = genesis_hash(self._key, self.stream), 1, 0
        purge_mark = read_ledger(self.dir, self._key, check=False).purged.get(self.stream)
        if purge_mark is not None:
            prev = purge_mark.last_hash.encode()
            next_seq = (purge_mark.last_seq or 0) + 1
            next_segno = purge_mark.through_segno + 1
        for segment in segments:
            try:
                seal = read_seal(segment)
                if seal is not None:
                    seal["last_hash"].encode()
            except (ValueError, KeyError, AttributeError) as exc:
                raise LogStoreUnavailable(
                    f"{segment.seal_path}: unreadable seal ({exc}); run `recsys logs verify`"
                ) from exc
            if seal is not None:
                prev, next_seq = seal["last_hash"].encode(), (seal["last_seq"] or next_seq - 1) + 1
                next_segno = segment.name.segno + 1
                continue
            scan = scan_segment(segment.path, prev)
            if segment is not segments[-1]:
                logger.warning("sealing %s left unsealed by a crash during a roll", segment.path.name)
                self._seal(segment, scan, "repair")
                prev, next_seq = scan.last_hash, (scan.last_seq or next_seq - 1) + 1
                next_segno = segment.name.segno + 1
                continue
            self._resume(segment, scan, next_seq)
            return
        self._start_segment(next_segno, prev, next_seq)

    def _resume(self, segment: SegmentFile, scan: SegmentScan, next_seq: int) -> None:
        """Continue writing an unsealed last segment, moving a partial last line aside first."""
        partial = scan.partial
        if partial:
            with open(segment.corrupt_path, "ab") as sidecar:
                sidecar.write(partial)
                sidecar.flush()
                os.fsync(sidecar.fileno())
            os.truncate(segment.path, scan.size)
            logger.error(
                "%s: moved a partial last line (%d bytes, crash mid-write) to %s",
                segment.path.name,
                len(partial),
                segment.corrupt_path.name,
            )
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
        os.fsync(self._fd)
        self._set_segment(segment, scan.prev_in, scan.records, scan.first_seq, scan.first_ts, scan)
        self._prev = scan.last_hash
        self._next_seq = scan.last_seq + 1 if scan.last_seq is not None else next_seq
        self._last_ts = scan.last_ts
        self._written_bytes = scan.size
        if scan.last_ts is not None:
            last = parse_ts(scan.last_ts) - EPOCH
            self._clock.not_before((last.days * 86_400 + last.seconds) * 10**9 + last.microseconds * 1000)
        if partial:
            self._append_locked(
                "repair",
                encode_record(
                    "repair",
                    {
                        "segment": segment.path.name,
                        "line": scan.records + 1,
                        "bytes": len(partial),
                        "corrupt_file": segment.corrupt_path.name,
                        "reason": "partial last line after a crash",
                    },
                ),
            )

    def _start_segment(self, segno: int, prev: bytes, next_seq: int) -> None:
        start_ns = self._clock.now_ns()
        start = EPOCH + timedelta(microseconds=start_ns // 1000)
        name = SegmentName(self.stream, segno, start)
        segment = SegmentFile(self.dir / name.file_name, name)
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fsync_dir(self.dir)
        old_fd, self._fd = self._fd, fd
        self._prev = prev
        self._next_seq = next_seq
        self._last_ts = None
        self._written_bytes = 0
        self._set_segment(segment, prev, 0, None, None, None)
        if old_fd >= 0:
            os.close(old_fd)

    def _set_segment(
        self,
        segment: SegmentFile,
        prev_in: bytes,
        records: int,
        first_seq: int | None,
        first_ts: str | None,
        scan: SegmentScan | None,
    ) -> None:
        self._segment = segment
        self._segment_prev_in = prev_in
        self._segment_records = records
        self._segment_first_seq = first_seq
        self._segment_first_ts = first_ts
        self._sha = scan.sha_state if scan is not None else hashlib.sha256()
        start_ns = calendar.timegm(segment.name.start.timetuple()) * 1_000_000_000
        self._day_end_ns = (start_ns // NS_PER_DAY + 1) * NS_PER_DAY

    def _current_scan(self) -> SegmentScan:
        return SegmentScan(
            records=self._segment_records,
            first_seq=self._segment_first_seq,
            last_seq=self._next_seq - 1 if self._segment_records else None,
            first_ts=self._segment_first_ts,
            last_ts=self._last_ts if self._segment_records else None,
            prev_in=self._segment_prev_in,
            last_hash=self._prev,
            sha256=self._sha.hexdigest(),
            size=self._written_bytes,
            partial=b"",
            sha_state=self._sha,
        )

    def _seal(self, segment: SegmentFile, scan: SegmentScan, reason: str) -> None:
        write_json_atomic(segment.seal_path, make_seal(self._key, segment, scan, reason))

    # --- writing ----------------------------------------------------------------------------

    def append(self, kind: str, record: dict[str, Any]) -> Receipt:
        """Append one record; returns once the line is written (see module doc for durability)."""
        check_kind(kind)
        data_json = encode_record(kind, record)
        with self._lock:
            return self._append_locked(kind, data_json)

    async def append_async(self, kind: str, record: dict[str, Any]) -> Receipt:
        """Append from the event loop.

        With fsync "group" the write is done inline: an append measures ~25-40 us on this
        machine (benchmarks/logstore_bench.py), cheaper than a thread hop. With "always" the
        fsync (~0.5 ms+) runs on a dedicated writer thread so the loop keeps serving.
        """
        if self.config.fsync == "group":
            return self.append(kind, record)
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"logstore-{self.stream}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.append, kind, record)

    def _append_locked(self, kind: str, data_json: bytes) -> Receipt:
        if self._closed:
            raise LogStoreUnavailable(f"stream {self.stream!r} is closed")
        if self._failure is not None:
            raise LogStoreUnavailable(self._failure)
        if os.getpid() != self._pid:
            raise LogStoreUnavailable("LogStore used in a forked child; create one per worker process")
        now_ns = self._clock.now_ns()
        if now_ns >= self._day_end_ns:
            self._roll("roll-day")
        elif self._segment_records >= self.config.segment_max_records:
            self._roll("roll-size")
        ts = self._clock.format(now_ns)
        seq = self._next_seq
        canonical = encode_canonical(seq, ts, kind, self._prev, data_json)
        digest = line_mac(self._mac, self._prev, canonical)
        line = line_from_canonical(canonical, digest)
        self._write(line)
        if self._segment_records == 0:
            self._segment_first_seq, self._segment_first_ts = seq, ts
        self._segment_records += 1
        self._sha.update(line)
        self._written_bytes += len(line)
        self._prev = digest
        self._next_seq = seq + 1
        self._last_ts = ts
        self._written += 1
        if self.config.fsync == "always":
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._failure = f"{self._segment.path}: fsync failed ({exc})"
                raise LogStoreUnavailable(self._failure) from exc
            self._synced = self._written
        return Receipt(self.stream, self._segment.path.name, seq, ts, digest.decode())

    def _write(self, line: bytes) -> None:
        """os.write the whole line or nothing: a short write (disk full) is truncated away."""
        view = memoryview(line)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._written_bytes)
            except OSError as trunc_exc:
                self._failure = (
                    f"{self._segment.path}: write failed ({exc}) and the partial line could not be "
                    f"removed ({trunc_exc}); reopen the stream to repair it"
                )
                raise LogStoreUnavailable(self._failure) from exc
            reason = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "I/O error"
            raise LogStoreUnavailable(f"{self._segment.path}: append failed, {reason} ({exc})") from exc

    def _roll(self, reason: str) -> None:
        """Start the next segment, then seal this one (a successor always exists for a roll seal)."""
        old_segment, old_scan, old_fd = self._segment, self._current_scan(), self._fd
        try:
            with self._fsync_lock:  # the group-commit thread must not fsync a closed fd
                os.fsync(old_fd)
                self._start_segment(old_segment.name.segno + 1, self._prev, self._next_seq)
            self._seal(old_segment, old_scan, reason)
        except OSError as exc:
            self._failure = f"{old_segment.path}: roll failed ({exc})"
            raise LogStoreUnavailable(self._failure) from exc

    def _group_commit(self) -> None:
        interval = self.config.group_commit_ms / 1000
        while not self._stop.wait(interval):
            self._sync_once()

    def _sync_once(self) -> None:
        with self._fsync_lock:
            target = self._written
            if target == self._synced or self._fd < 0:
                return
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._failure = f"{self._segment.path}: background fsync failed ({exc})"
                logger.error(self._failure)
                return
            self._synced = target

    # --- closing ----------------------------------------------------------------------------

    def close(self, reason: str = "close") -> None:
        """Fsync and seal the current segment, release the stream. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fsync_thread is not None:
                self._stop.set()
                self._fsync_thread.join()
            try:
                os.fsync(self._fd)
                self._seal(self._segment, self._current_scan(), reason)
            finally:
                self._abandon()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _abandon(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            release_lock(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> LogStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def current_segment(self) -> Path:
        return self._segment.path

    def lookup(self, request_id: str, user_id: str | int) -> dict[str, Any] | None:
        """The recommendation record `request_id` served to `user_id`, from any stream of the dir."""
        return lookup(self.dir, request_id, user_id, window_s=self.config.lookup_window_s)


# --- request ids ----------------------------------------------------------------------------


def new_request_id(at: datetime | None = None) -> str:
    """A time-ordered request id: UUIDv7 layout (48-bit unix ms, version 7, 74 random bits).

    `at` backdates it (replays, tests); by default it is now.
    """
    ms = time.time_ns() // 1_000_000 if at is None else int(at.timestamp() * 1000)
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def request_id_time(request_id: str) -> datetime:
    """The moment a request id was made; ValueError naming the id when it is not a UUIDv7."""
    try:
        parsed = uuid.UUID(request_id)
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"request_id: not a UUID: {request_id!r}") from exc
    if parsed.version != 7:
        raise ValueError(f"request_id: not a time-ordered (version 7) id: {request_id!r}")
    ms = int.from_bytes(parsed.bytes[:6], "big")
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"request_id: its time lies outside the calendar: {request_id!r}") from None


# --- lookup ---------------------------------------------------------------------------------


def segment_time_ranges(directory: Path) -> list[tuple[SegmentFile, datetime, datetime | None]]:
    """(segment, start, end bound or None if still open) for every segment, mostly from names.

    A segment's records end before the next segment of its stream starts (it is created at the
    roll), so only the last segment of each stream needs its seal read.
    """
    ranges: list[tuple[SegmentFile, datetime, datetime | None]] = []
    for segments in list_segments(directory)[0].values():
        for segment, following in zip(segments, [*segments[1:], None], strict=True):
            end: datetime | None = following.name.start if following is not None else None
            if following is None:
                try:
                    seal = read_seal(segment)
                except ValueError:
                    seal = None
                if seal is not None:
                    last_ts = seal.get("last_ts")
                    end = parse_ts(last_ts) if isinstance(last_ts, str) else segment.name.start
            ranges.append((segment, segment.name.start, end))
    return ranges


def _first_line_at_or_after(buf: mmap.mmap, size: int, ts: bytes) -> int:
    """Byte offset of the first line whose ts >= `ts` (lines are ts-sorted within a segment)."""
    lo, hi = 0, size  # lo and hi are line starts; lines before lo are older than ts
    while lo < hi:
        mid = (lo + hi) // 2
        start = buf.rfind(b"\n", lo, mid) + 1 or lo
        end = buf.find(b"\n", start, size) + 1 or size
        line_ts = _line_ts(buf, start)
        if line_ts is None or line_ts >= ts:
            hi = start
        else:
            lo = end
    return lo


def _line_ts(buf: mmap.mmap, start: int) -> bytes | None:
    head = buf[start : start + 80]
    at = head.find(b'"ts":"')
    return head[at + 6 : at + 6 + 27] if at >= 0 else None


def lookup(
    directory: Path, request_id: str, user_id: str | int, window_s: int = 300
) -> dict[str, Any] | None:
    """The recommendation record for `request_id` if it was served to `user_id`, else None.

    Only segments whose time range meets [id time, id time + window_s] are read, and within
    each only the lines in that window (binary search on the ts-sorted lines).
    """
    moment = request_id_time(request_id)
    low = moment - timedelta(seconds=1)  # ms truncation and clock granularity
    high = moment + timedelta(seconds=window_s)
    needle = b'"request_id":"' + request_id.encode() + b'"'
    low_ts = low.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    high_ts = high.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    for segment, start, end in segment_time_ranges(directory):
        if start > high or (end is not None and end < low):
            continue
        found = _find_in_segment(segment.path, needle, low_ts, high_ts, request_id, str(user_id))
        if found is not None:
            return found
    return None


def _find_in_segment(
    path: Path, needle: bytes, low_ts: bytes, high_ts: bytes, request_id: str, user_id: str
) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return None
            with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as buf:
                size = buf.rfind(b"\n") + 1
                begin = _first_line_at_or_after(buf, size, low_ts)
                finish = _first_line_at_or_after(buf, size, high_ts + b"~")
                at = buf.find(needle, begin, finish)
                while at >= 0:
                    line_start = buf.rfind(b"\n", 0, at) + 1
                    line_end = buf.find(b"\n", at)
                    line = buf[line_start:line_end]
                    head = parse_line(line)
                    if head is not None and head.kind == "recommendation":
                        data = json.loads(line)["data"]
                        if data.get("request_id") == request_id:
                            return data if str(data.get("user_id")) == user_id else None
                    at = buf.find(needle, line_end, finish)
    except FileNotFoundError:  # purged meanwhile
        return None
    return None
