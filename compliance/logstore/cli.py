"""`recsys logs ...`: verify, purge, export, compact and query the recommendation logs (Art. 28 (draft 24), Art. 29 (draft 25)).

The key comes from RECSYS_LOG_HMAC_KEY or --key-file (the built-in development key otherwise,
with a warning); the directory from --dir or RECSYS_LOG_DIR. --dir may be repeated and may be a
quoted glob ('var/cluster/replica-*/logs'): each replica of a deployment writes its own directory
of hash chains, and verify, query, export, compact and purge take them all (verify reports each
directory and each stream, query and export merge them, saying in `log_dir` where a row is). Bad input is reported on one line
naming the flag or file, exit code 2; `verify` exits 1 when it finds tampering or damage.
"""

from __future__ import annotations

import glob
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, NoReturn, cast

import typer

from recsys.config import core_settings
from compliance.logstore.config import DEV_HMAC_KEY, MIN_RETENTION_DAYS, key_bytes
from compliance.logstore.export import export as export_logs
from compliance.logstore.query import compact as compact_logs
from compliance.logstore.query import query as query_logs
from compliance.logstore.retention import purge as purge_logs
from compliance.logstore.segment import LogStoreError
from compliance.logstore.verify import verify_many

app = typer.Typer(
    help="Recommendation service logs: verify, purge, export, compact, query (Art. 28 (draft 24), Art. 29 (draft 25)).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

KEY_ENV = "RECSYS_LOG_HMAC_KEY"
DIR_ENV = "RECSYS_LOG_DIR"

DirOption = Annotated[
    list[str] | None,
    typer.Option("--dir", help=f"Log directory; repeat it or quote a glob for several, e.g. one per replica "
                 f"(default ${DIR_ENV} or var/logs of the project, where the server writes)."),
]
KeyFileOption = Annotated[
    Path | None, typer.Option("--key-file", help=f"File holding the HMAC key (default ${KEY_ENV}).")
]


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


GLOB_CHARACTERS = frozenset("*?[")


def resolve_dirs(values: list[str] | None) -> list[Path]:
    """The directories --dir names (globs expanded, in order, each once), or the default one."""
    if not values:
        path = Path(os.environ.get(DIR_ENV) or core_settings().var_dir / "logs")
        if not path.is_dir():
            fail(f"--dir: not a directory: '{path}'")
        return [path]
    paths: list[Path] = []
    for value in values:
        if GLOB_CHARACTERS & set(value):
            matched = sorted(Path(p) for p in glob.glob(value) if Path(p).is_dir())
            if not matched:
                fail(f"--dir: '{value}' matches no directory")
            paths.extend(matched)
        elif not Path(value).is_dir():
            fail(f"--dir: not a directory: '{value}'")
        else:
            paths.append(Path(value))
    return list(dict.fromkeys(paths))


def resolve_key(key_file: Path | None) -> bytes:
    if key_file is not None:
        try:
            text = key_file.read_bytes().strip()
        except OSError as exc:
            fail(f"--key-file: cannot read '{key_file}': {exc.strerror or exc}")
        source = "--key-file"
    elif os.environ.get(KEY_ENV):
        text, source = os.environ[KEY_ENV].encode(), KEY_ENV
    else:
        typer.echo(f"warning: {KEY_ENV} not set and no --key-file: using the development key", err=True)
        text, source = DEV_HMAC_KEY.encode(), "default"
    try:
        return key_bytes(text)
    except ValueError as exc:
        fail(f"{source}: {exc}")


def parse_moment(flag: str, value: str | None) -> datetime | None:
    """An ISO date or datetime (UTC unless it carries an offset)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{flag}: not an ISO date: '{value}'")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@app.command()
def verify(
    directory: DirOption = None,
    key_file: KeyFileOption = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="First seal dead streams and repair partial last lines.")
    ] = False,
) -> None:
    """Check every chain hash, seal, segment sequence and purge mark of each directory; report each
    directory and each stream (one writer's chain); exit 1 on tampering anywhere."""
    paths, key = resolve_dirs(directory), resolve_key(key_file)
    result = verify_many(paths, key, repair=repair)
    several = len(paths) > 1
    for path, report in result.reports.items():
        for note in report.notes:
            typer.echo(f"note: {note}")
        typer.echo(f"{path}: {report.summary}" if several else report.summary)
        for stream in report.per_stream.values():
            typer.echo(f"  {stream}")
        for problem in report.problems[:50]:
            typer.echo(f"  {problem}")
        hidden = report.problem_count - 50
        if hidden > 0:
            typer.echo(f"  ... and {hidden} more")
    if several:
        typer.echo(f"all: {result.summary}")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def purge(
    directory: DirOption = None,
    key_file: KeyFileOption = None,
    retention_days: Annotated[
        int, typer.Option("--retention-days", help=f"Keep at least this many days (>= {MIN_RETENTION_DAYS}).")
    ] = MIN_RETENTION_DAYS,
    operator: Annotated[str, typer.Option("--operator", help="Who runs the purge.")] = "cli",
) -> None:
    """Delete whole sealed segments older than the retention, recording what was deleted."""
    if retention_days < MIN_RETENTION_DAYS:
        fail(f"--retention-days: {retention_days} is below the minimum of {MIN_RETENTION_DAYS} days (Art. 28 (draft 24))")
    paths, key = resolve_dirs(directory), resolve_key(key_file)
    for path in paths:
        try:
            deleted = purge_logs(path, key, retention_days, operator=operator)
        except (LogStoreError, ValueError) as exc:
            fail(f"{path}: {exc}")
        typer.echo(f"{path}: purged {len(deleted)} segment(s) older than {retention_days} days")
        for deleted_path in deleted:
            typer.echo(f"  {deleted_path.name}")


@app.command()
def export(
    start: Annotated[str, typer.Option("--from", help="Start, ISO date/datetime, inclusive (UTC).")],
    end: Annotated[str, typer.Option("--to", help="End, ISO date/datetime, exclusive (UTC).")],
    operator: Annotated[str, typer.Option("--operator", help="Who exports (recorded).")],
    out: Annotated[Path, typer.Option("--out", help="Export file to write (never overwritten).")],
    user: Annotated[str | None, typer.Option("--user", help="Only this user's records.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Write real user ids instead of pseudonyms (recorded).")
    ] = False,
    directory: DirOption = None,
    key_file: KeyFileOption = None,
) -> None:
    """Export records of a time range (user ids pseudonymised) with a signed proof beside it."""
    start_at, end_at = parse_moment("--from", start), parse_moment("--to", end)
    if start_at is None or end_at is None:
        fail("--from and --to: both are required")
    if fmt not in ("parquet", "csv"):
        fail(f"--format: must be parquet or csv, got '{fmt}'")
    if start_at >= end_at:
        fail(f"--to: '{end}' is not after --from '{start}'")
    if out.exists():
        fail(f"--out: '{out}' already exists (exports are never overwritten)")
    if not out.parent.is_dir():
        fail(f"--out: directory '{out.parent}' does not exist")
    if not operator.strip():
        fail("--operator: must not be empty")
    paths, key = resolve_dirs(directory), resolve_key(key_file)
    try:
        result = export_logs(
            paths, key, start_at, end_at, user_id=user, fmt=cast(Literal["parquet", "csv"], fmt), reveal=reveal,
            operator=operator, out=out,
        )
    except (LogStoreError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"exported {result.rows} rows to {result.out} (sha256 {result.sha256})")
    typer.echo(f"proof: {result.proof}")
    if not result.verified:
        typer.echo("warning: verification found problems; see the proof file", err=True)


@app.command()
def compact(directory: DirOption = None, key_file: KeyFileOption = None) -> None:
    """Write a verified Parquet copy of every sealed segment (dir/parquet/date=.../)."""
    paths, key = resolve_dirs(directory), resolve_key(key_file)
    for path in paths:
        result = compact_logs(path, key)
        typer.echo(f"{path}: compacted {len(result.written)} segment(s)" if len(paths) > 1
                   else f"compacted {len(result.written)} segment(s)")
        for skipped in result.skipped:
            typer.echo(f"  skipped {skipped}", err=True)


@app.command()
def query(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's records.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start, ISO date/datetime (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, exclusive (UTC).")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind (e.g. recommendation).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Rows to print (0: all).")] = 20,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or ndjson.")] = "table",
    directory: DirOption = None,
) -> None:
    """Print log rows of every directory given, merged in time order (raw user ids: internal use; use
    `export` for inspectors)."""
    start_at, end_at = parse_moment("--from", start), parse_moment("--to", end)
    if fmt not in ("table", "csv", "ndjson"):
        fail(f"--format: must be table, csv or ndjson, got '{fmt}'")
    frame = query_logs(resolve_dirs(directory), user_id=user, start=start_at, end=end_at, kind=kind)
    shown = frame.head(limit) if limit else frame
    if fmt == "csv":
        sys.stdout.write(shown.write_csv())
    elif fmt == "ndjson":
        sys.stdout.write(shown.write_ndjson())
    else:
        typer.echo(str(shown.select("ts", "kind", "user_id", "request_id", "surface", "mode", "n_items", "log_dir")))
        typer.echo(f"{frame.height} row(s)")
