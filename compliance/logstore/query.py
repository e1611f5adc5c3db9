"""Reading the recommendation logs for inspection (Art. 28 (draft 24): produce them when authorities ask).

`flatten` turns an entry into one row (request_id, ts, kind, user_id, surface, page, mode,
model_version, ..., nested parts as JSON strings). `query` reads one log directory or several (the
replicas of a deployment, each with its own streams) and says in `log_dir` where each row is kept.
`compact` writes a verified Parquet copy of
each sealed segment under dir/parquet/date=YYYY-MM-DD/ (rows sorted by user, small row groups,
so a one-user query reads a few row groups per day). The JSONL segments stay the system of
record; Parquet is a derived index that `compact` can rebuild. `query` reads the Parquet of the
days asked for plus the segments not compacted yet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from compliance.logstore.config import key_bytes
from compliance.logstore.segment import (
    PARQUET_DIR,
    SegmentFile,
    iter_lines,
    keyed_mac,
    line_mac,
    list_segments,
    parquet_path,
    parse_line,
    parse_ts,
    read_seal,
    seal_signature_ok,
)
from compliance.logstore.store import segment_time_ranges
from compliance.logstore.verify import repair_dead_streams

SCALAR_COLUMNS = ("request_id", "user_id", "surface", "mode", "model_version", "index_build_id", "policy_hash")
JSON_COLUMNS = ("items", "candidates", "policies", "violations", "request")
SCHEMA: dict[str, pl.DataType] = {
    "stream": pl.Utf8(),
    "seq": pl.Int64(),
    "ts": pl.Datetime("us", "UTC"),
    "kind": pl.Utf8(),
    **{name: pl.Utf8() for name in SCALAR_COLUMNS},
    "page": pl.Int64(),
    "n_items": pl.Int32(),
    **{name: pl.Utf8() for name in JSON_COLUMNS},
    "extra": pl.Utf8(),
    "hash": pl.Utf8(),
}
ROW_GROUP_SIZE = 8192
LOG_DIR_COLUMN = "log_dir"  # query's output: which of the directories asked holds the row


def as_directories(directories: Path | str | Sequence[Path | str]) -> list[Path]:
    """One directory or several, as a list of paths in the order given (repeats dropped)."""
    if isinstance(directories, (str, Path)):
        return [Path(directories)]
    return list(dict.fromkeys(Path(d) for d in directories))


def log_dir_labels(directories: Sequence[Path]) -> dict[Path, str]:
    """A short, distinct name per directory: its path below the directories' common parent
    (var/cluster/replica-a/logs and .../replica-b/logs -> replica-a/logs, replica-b/logs); a lone
    directory is named by its last component."""
    resolved = [Path(os.path.abspath(d)) for d in directories]
    if len(resolved) == 1:
        return {directories[0]: resolved[0].name}
    common = Path(os.path.commonpath(resolved))
    return {d: (str(r.relative_to(common)) or r.name) for d, r in zip(directories, resolved)}

def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def flatten(stream: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One log entry (envelope + data) as a flat row of SCHEMA."""
    data = entry.get("data") or {}
    row: dict[str, Any] = {
        "stream": stream,
        "seq": entry["seq"],
        "ts": parse_ts(entry["ts"]),
        "kind": entry["kind"],
        "hash": entry.get("hash"),
    }
    for name in SCALAR_COLUMNS:
        value = data.get(name)
        row[name] = None if value is None else str(value)
    page = data.get("page")
    row["page"] = page if isinstance(page, int) and not isinstance(page, bool) else None
    items = data.get("items")
    row["n_items"] = len(items) if isinstance(items, list) else None
    for name in JSON_COLUMNS:
        row[name] = _dump(data.get(name))
    known = set(SCALAR_COLUMNS) | set(JSON_COLUMNS) | {"page"}
    rest = {k: v for k, v in data.items() if k not in known}
    row["extra"] = _dump(rest) if rest else None
    return row


def rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)


def _user_needles(user_id: str) -> tuple[bytes, ...]:
    encoded = json.dumps(user_id).encode()
    needles = [b'"user_id":' + encoded]
    if user_id.lstrip("-").isdigit():
        needles += [b'"user_id":' + user_id.encode() + b",", b'"user_id":' + user_id.encode() + b"}"]
    return tuple(needles)


def _read_segment_rows(
    segment: SegmentFile,
    user_id: str | None,
    start_ts: str | None,
    end_ts: str | None,
    kind: str | None,
) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL segment matching the filters; cheap byte tests before any JSON decoding."""
    try:
        data = segment.path.read_bytes()
    except FileNotFoundError:
        return
    needles = _user_needles(user_id) if user_id is not None else ()
    for _, line in iter_lines(data):
        head = parse_line(line)
        if head is None:
            continue
        if (start_ts and head.ts < start_ts) or (end_ts and head.ts >= end_ts):
            continue
        if kind is not None and head.kind != kind:
            continue
        if needles and not any(n in line for n in needles):
            continue
        row = flatten(segment.name.stream, json.loads(line))
        if user_id is not None and row["user_id"] != user_id:
            continue
        yield row


def _ts_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_utc(moment: datetime | date | None) -> datetime | None:
    """A date (midnight UTC) or datetime (naive read as UTC) as an aware UTC datetime."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _day_of(partition: Path) -> date | None:
    try:
        return date.fromisoformat(partition.name.removeprefix("date="))
    except ValueError:
        return None


def query(
    directories: Path | str | Sequence[Path | str],
    user_id: str | int | None = None,
    start: datetime | date | None = None,
    end: datetime | date | None = None,
    kind: str | None = None,
) -> pl.DataFrame:
    """Log rows in [start, end) (UTC) of one directory or several (e.g. every replica's), optionally for
    one user and one kind, sorted by ts: SCHEMA's columns and `log_dir` (see `log_dir_labels`)."""
    paths = as_directories(directories)
    labels = log_dir_labels(paths)
    start, end = as_utc(start), as_utc(end)
    user = None if user_id is None else str(user_id)
    frames = [_query_directory(path, user, start, end, kind).with_columns(pl.lit(labels[path]).alias(LOG_DIR_COLUMN))
              for path in paths]
    empty = pl.DataFrame(schema={**SCHEMA, LOG_DIR_COLUMN: pl.Utf8()})
    return pl.concat([empty, *frames]).sort(["ts", LOG_DIR_COLUMN, "stream", "seq"])


def _query_directory(
    directory: Path, user: str | None, start: datetime | None, end: datetime | None, kind: str | None
) -> pl.DataFrame:
    """One directory's rows: the Parquet of the days asked for, plus the segments not compacted yet."""
    compacted: set[str] = set()
    files: list[str] = []
    for partition in sorted((directory / PARQUET_DIR).glob("date=*")):
        day = _day_of(partition)
        if day is None:
            continue
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for path in partition.glob("*.parquet"):
            compacted.add(path.stem)
            if (start is None or day_start + timedelta(days=1) > start) and (end is None or day_start < end):
                files.append(str(path))
    frames: list[pl.DataFrame] = []
    if files:
        lazy = pl.scan_parquet(files, schema=SCHEMA, hive_partitioning=False)
        if user is not None:
            lazy = lazy.filter(pl.col("user_id") == user)
        if start is not None:
            lazy = lazy.filter(pl.col("ts") >= start)
        if end is not None:
            lazy = lazy.filter(pl.col("ts") < end)
        if kind is not None:
            lazy = lazy.filter(pl.col("kind") == kind)
        frames.append(lazy.collect())
    rows: list[dict[str, Any]] = []
    start_ts, end_ts = _ts_text(start), _ts_text(end)
    for segment, seg_start, seg_end in segment_time_ranges(directory):
        if segment.path.name.removesuffix(".jsonl") in compacted:
            continue
        if end is not None and seg_start >= end:
            continue
        if start is not None and seg_end is not None and seg_end < start:
            continue
        rows.extend(_read_segment_rows(segment, user, start_ts, end_ts, kind))
    if rows:
        frames.append(rows_frame(rows))
    if not frames:
        return pl.DataFrame(schema=SCHEMA)
    return pl.concat(frames)


@dataclass(slots=True)
class CompactResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def compact(directory: Path, key: str | bytes | Any | None = None) -> CompactResult:
    """Write a Parquet copy of every sealed segment that has none yet (checked line by line).

    With `key`, dead streams are first sealed and every line's chain hash and the seal are
    checked; a segment that fails is skipped (listed in `skipped`) and stays JSONL-only.
    """
    directory = Path(directory)
    result = CompactResult()
    raw_key = key_bytes(key) if key is not None else None
    if raw_key is not None:
        repair_dead_streams(directory, raw_key)
    for segments in list_segments(directory)[0].values():
        for segment in segments:
            target = parquet_path(directory, segment.name)
            if target.exists():
                continue
            try:
                seal = read_seal(segment)
            except ValueError as exc:
                result.skipped.append(f"{segment.path.name}: {exc}")
                continue
            if seal is None:
                continue  # still being written (or dead and not repaired: needs the key)
            problem = _compact_one(segment, seal, raw_key, target)
            if problem is None:
                result.written.append(target)
            else:
                result.skipped.append(f"{segment.path.name}: {problem}")
    return result


def _compact_one(segment: SegmentFile, seal: dict[str, Any], key: bytes | None, target: Path) -> str | None:
    data = segment.path.read_bytes()
    if key is not None:
        if not seal_signature_ok(key, seal):
            return "seal signature invalid"
        if hashlib.sha256(data).hexdigest() != seal.get("sha256"):
            return "content differs from its seal"
    mac = keyed_mac(key) if key is not None else None
    rows: list[dict[str, Any]] = []
    prev = seal.get("prev_hash", "").encode()
    for number, line in iter_lines(data):
        head = parse_line(line)
        if head is None:
            return f"line {number}: malformed"
        if mac is not None and (
            head.prev != prev or not hmac.compare_digest(line_mac(mac, head.prev, head.canonical), head.hash)
        ):
            return f"line {number}: chain hash mismatch"
        prev = head.hash
        rows.append(flatten(segment.name.stream, json.loads(line)))
    frame = rows_frame(rows).sort(["user_id", "ts"], nulls_last=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp, compression="zstd", row_group_size=ROW_GROUP_SIZE, statistics=True)
    os.replace(tmp, target)
    return None

