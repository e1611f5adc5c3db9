"""Retention of recommendation logs (Art. 28 (draft 24): keep them at least six months, then delete whole).

`purge` deletes only whole, sealed segments whose newest record is older than the retention,
oldest first per stream (never a hole in a chain). It writes a signed purge mark to the ledger
before deleting, so `verify` accepts the shortened chain, and appends a "purge" record naming
every deleted segment. Deleting segments any other way is reported by `verify` as tampering.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from compliance.logstore.config import check_retention_days, config_for, key_bytes
from compliance.logstore.ledger import locked_ledger, read_ledger
from compliance.logstore.segment import (
    SegmentFile,
    default_stream_name,
    format_ts,
    fsync_dir,
    list_segments,
    lock_path,
    parquet_path,
    parse_ts,
    read_seal,
    seal_signature_ok,
    stream_is_live,
)
from compliance.logstore.store import LogStore
from compliance.logstore.verify import repair_dead_streams

CLOCK_SKEW_ALLOWED = timedelta(minutes=5)


def _expired_prefix(
    key: bytes, segments: list[SegmentFile], cutoff: datetime
) -> list[tuple[SegmentFile, dict[str, Any]]]:
    """The leading run of sealed, validly signed segments whose newest record is before `cutoff`."""
    victims: list[tuple[SegmentFile, dict[str, Any]]] = []
    for segment in segments:
        try:
            seal = read_seal(segment)
        except ValueError:
            break
        if seal is None or not seal_signature_ok(key, seal) or seal.get("segment") != segment.path.name:
            break
        newest = parse_ts(seal["last_ts"]) if seal.get("last_ts") else segment.name.start
        if newest >= cutoff:
            break
        victims.append((segment, seal))
    return victims


def purge(
    directory: Path,
    key: str | bytes | Any,
    retention_days: int,
    now: datetime | None = None,
    *,
    store: LogStore | None = None,
    operator: str = "system",
) -> list[Path]:
    """Delete whole sealed segments older than `retention_days` (>= 180); returns their paths.

    `now` defaults to the clock and may not run ahead of it (that would purge young logs).
    The "purge" record goes to `store`, or to a fresh "ops-..." stream when none is given.
    """
    check_retention_days(retention_days)
    real_now = datetime.now(UTC)
    now = real_now if now is None else (now if now.tzinfo else now.replace(tzinfo=UTC))
    if now > real_now + CLOCK_SKEW_ALLOWED:
        raise ValueError(f"now: {now.isoformat()} is in the future; purge cannot run ahead of the clock")
    cutoff = now - timedelta(days=retention_days)
    key = key_bytes(key)
    directory = Path(directory)
    repair_dead_streams(directory, key)
    own_store = store is None
    if store is None:
        config = config_for(directory, key, retention_days=retention_days)
        store = LogStore(config, default_stream_name("ops"))
    try:
        deleted, summary = _purge_locked(directory, key, cutoff)
        store.append(
            "purge",
            {
                "operator": operator,
                "retention_days": retention_days,
                "cutoff": format_ts(cutoff),
                "deleted": summary,
            },
        )
    finally:
        if own_store:
            store.close()
    return deleted


def _purge_locked(directory: Path, key: bytes, cutoff: datetime) -> tuple[list[Path], list[dict[str, Any]]]:
    """Under the ledger lock: mark each stream's expired prefix as purged, then delete it."""
    deleted: list[Path] = []
    summary: list[dict[str, Any]] = []
    with locked_ledger(directory, key) as ledger:
        marks = read_ledger(directory, key, check=False).purged
        for stream, segments in sorted(list_segments(directory)[0].items()):
            victims = _expired_prefix(key, segments, cutoff)
            if not victims:
                continue
            prior = marks.get(stream)
            last_seq = next(
                (seal["last_seq"] for _, seal in reversed(victims) if seal.get("last_seq") is not None),
                prior.last_seq if prior else None,
            )
            last_segment, last_seal = victims[-1]
            complete = (
                len(victims) == len(segments)
                and not str(last_seal.get("reason", "")).startswith("roll")
                and not stream_is_live(directory, stream)
            )
            ledger.append(
                "purge",
                {
                    "stream": stream,
                    "through_segno": last_segment.name.segno,
                    "last_seq": last_seq,
                    "last_hash": last_seal["last_hash"],
                    "complete": complete,
                    "segments": len(victims),
                    "cutoff": format_ts(cutoff),
                },
            )
            for segment, seal in victims:
                for path in (
                    segment.path,
                    segment.seal_path,
                    segment.corrupt_path,
                    parquet_path(directory, segment.name),
                ):
                    path.unlink(missing_ok=True)
                deleted.append(segment.path)
                summary.append(
                    {
                        "segment": segment.path.name,
                        "records": seal["records"],
                        "first_seq": seal["first_seq"],
                        "last_seq": seal["last_seq"],
                        "last_ts": seal["last_ts"],
                        "last_hash": seal["last_hash"],
                        "sha256": seal["sha256"],
                    }
                )
            if complete:
                lock_path(directory, stream).unlink(missing_ok=True)
        fsync_dir(directory)
    return deleted, summary
