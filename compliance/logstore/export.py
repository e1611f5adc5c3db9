"""Export of recommendation logs for an inspection (Art. 28 (draft 24): produce logs; Art. 29 (draft 25): keep personal
information confidential during inspection).

User ids are pseudonymised as HMAC(key, "user:" + id) — stable within the key, so an inspector
can follow one user without learning who it is — unless `reveal` is given (and recorded). Beside
the export file a signed proof JSON holds the verification result, the seals of the segments
covered, the row count and the file's SHA-256; the export itself is appended as an "export" record.
An export may span several log directories (the replicas of a deployment): the rows of all of them,
each with the `log_dir` it is kept in, and the verification and seals of each directory's streams.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from compliance.logstore.config import config_for, key_bytes
from compliance.logstore.query import JSON_COLUMNS, LOG_DIR_COLUMN, as_directories, as_utc, log_dir_labels, query
from compliance.logstore.segment import (
    default_stream_name,
    format_ts,
    read_seal,
    sign,
    write_json_atomic,
)
from compliance.logstore.store import LogStore, Receipt, segment_time_ranges
from compliance.logstore.verify import verify_many

EXPORT_COLUMNS = (
    "request_id", "ts", "kind", "user", "surface", "page", "mode", "model_version",
    "index_build_id", "policy_hash", "n_items", "items", "candidates", "policies",
    "violations", "request", "extra", LOG_DIR_COLUMN, "stream", "seq", "hash",
)  # fmt: skip
PSEUDONYM_PREFIX = "u_"


def pseudonym(key: bytes, user_id: str | int) -> str:
    """Stable pseudonym of a user id under `key` (32 hex characters)."""
    digest = hmac.new(key, b"user:" + str(user_id).encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def _pseudonymise_json(key: bytes, text: str | None) -> str | None:
    """Replace every "user_id" value inside a JSON column by its pseudonym."""
    if text is None or '"user_id"' not in text:
        return text

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (pseudonym(key, v) if k == "user_id" and v is not None else walk(v)) for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return json.dumps(walk(json.loads(text)), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ExportResult:
    out: Path
    proof: Path
    rows: int
    sha256: str
    verified: bool
    receipt: Receipt


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(
    directories: Path | str | Sequence[Path | str],
    key: str | bytes | Any,
    start: datetime | date,
    end: datetime | date,
    user_id: str | int | None = None,
    fmt: Literal["parquet", "csv"] = "parquet",
    reveal: bool = False,
    operator: str = "",
    out: Path | None = None,
    *,
    store: LogStore | None = None,
) -> ExportResult:
    """Write the records in [start, end) (optionally one user's) of one log directory or several to
    `out` with a proof beside it.

    Raises ValueError naming the bad argument. The "export" record goes to `store`, or to a
    fresh "ops-..." stream of the first directory when none is given; if it cannot be written the
    export is removed.
    """
    paths = as_directories(directories)
    if not paths:
        raise ValueError("directories: at least one log directory is required")
    raw_key = key_bytes(key)
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt: {fmt!r} must be 'parquet' or 'csv'")
    if not operator or not operator.strip():
        raise ValueError("operator: required (who is exporting, for the export record)")
    if out is None:
        raise ValueError("out: required (path of the export file)")
    out = Path(out)
    start_utc, end_utc = as_utc(start), as_utc(end)
    if start_utc is None or end_utc is None or start_utc >= end_utc:
        raise ValueError(f"start/end: empty range {start!r} .. {end!r}")
    if out.exists():
        raise ValueError(f"out: {out} already exists (exports are never overwritten)")
    if not out.parent.is_dir():
        raise ValueError(f"out: directory {out.parent} does not exist")
    proof_path = out.with_name(out.name + ".proof.json")

    frame = query(paths, user_id=user_id, start=start_utc, end=end_utc)
    frame = _present_users(frame, raw_key, reveal)
    if fmt == "parquet":
        frame.write_parquet(out, compression="zstd")
    else:
        frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")).write_csv(out)
    sha = _file_sha256(out)

    labels = log_dir_labels(paths)
    covered = {
        path: [
            segment
            for segment, seg_start, seg_end in segment_time_ranges(path)
            if seg_start < end_utc and (seg_end is None or seg_end >= start_utc)
        ]
        for path in paths
    }
    report = verify_many(paths, raw_key, content={path: {s.path.name for s in segments} for path, segments in covered.items()})
    user_shown = None if user_id is None else (str(user_id) if reveal else pseudonym(raw_key, user_id))
    own_store = store is None
    try:
        if store is None:
            store = LogStore(config_for(paths[0], raw_key), default_stream_name("ops"))
        receipt = store.append(
            "export",
            {
                "operator": operator,
                "start": format_ts(start_utc),
                "end": format_ts(end_utc),
                "user_id": None if user_id is None else str(user_id),
                "reveal": reveal,
                "format": fmt,
                "file": out.name,
                "rows": frame.height,
                "sha256": sha,
                "verified": report.ok,
                "log_dirs": [labels[path] for path in paths],
            },
        )
    except Exception:
        out.unlink(missing_ok=True)
        raise
    finally:
        if own_store and store is not None:
            store.close()
    proof = {
        "export_file": out.name,
        "format": fmt,
        "sha256": sha,
        "rows": frame.height,
        "range": {"start": format_ts(start_utc), "end": format_ts(end_utc)},
        "user": user_shown,
        "reveal": reveal,
        "operator": operator,
        "created_at": format_ts(datetime.now(UTC)),
        "log_dirs": {labels[path]: str(path) for path in paths},
        "verification": report.to_dict(),
        "segments": [{**_seal_or_open(s), LOG_DIR_COLUMN: labels[path]} for path, segments in covered.items() for s in segments],
        "export_record": {"stream": receipt.stream, "segment": receipt.segment, "seq": receipt.seq,
                          "ts": receipt.ts, "hash": receipt.hash},
    }  # fmt: skip
    proof["sig"] = sign(raw_key, proof)
    write_json_atomic(proof_path, proof)
    os.chmod(out, 0o640)
    return ExportResult(out, proof_path, frame.height, sha, report.ok, receipt)


def _seal_or_open(segment: Any) -> dict[str, Any]:
    try:
        seal = read_seal(segment)
    except ValueError as exc:
        return {"segment": segment.path.name, "seal": None, "error": str(exc)}
    if seal is None:
        return {"segment": segment.path.name, "seal": None, "state": "open (not sealed yet)"}
    return seal


def _present_users(frame: pl.DataFrame, key: bytes, reveal: bool) -> pl.DataFrame:
    """Rename user_id to `user`, pseudonymised (also inside JSON columns) unless `reveal`."""
    if not reveal:
        frame = frame.with_columns(
            pl.col("user_id").map_elements(lambda u: pseudonym(key, u), return_dtype=pl.Utf8),
            *[
                pl.col(name).map_elements(lambda t: _pseudonymise_json(key, t), return_dtype=pl.Utf8)
                for name in (*JSON_COLUMNS, "extra")
            ],
        )
    return frame.rename({"user_id": "user"}).select(EXPORT_COLUMNS)
