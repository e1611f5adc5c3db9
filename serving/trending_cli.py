"""`recsys trending verify`: recompute logged hot-list snapshots from the stored events and show that
each equals what was served (Art. 11, Art. 14 (draft 13), Art. 28 (draft 24); the 2024-25 hot-list campaign: hot-list logs kept).

The state database and the log directory come from the server's settings (RECSYS_DATABASE_URL,
RECSYS_LOG_DIR, RECSYS_LOG_HMAC_KEY). The log's chain hashes and seals are checked first (the
snapshots are only as good as the log they are read from), then every snapshot is recomputed and
every list served from it recomposed. Exit 0: everything reproduces; 1: one line per mismatch;
2: bad input, named on one line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn

import typer

app = typer.Typer(help="The hot list: verify logged snapshots against the stored events.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _moment(flag: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{flag}: not an ISO date or datetime: {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@app.command("verify")
def verify(
    snapshot_id: Annotated[str | None, typer.Argument(help="The snapshot to verify (a served list's snapshot_id).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every snapshot in the log.")] = False,
    since: Annotated[str | None, typer.Option(help="Snapshots logged at or after this ISO date/time (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Snapshots logged before this ISO date/time (UTC).")] = None,
    skip_log_check: Annotated[bool, typer.Option("--skip-log-check", help="Do not check the log's chain first.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print mismatches and the summary only.")] = False,
) -> None:
    """Recompute snapshots (one id, --all, or --since/--until) and compare them with what was served."""
    from pydantic import ValidationError

    from compliance.logstore import LogStoreError, request_id_time
    from compliance.logstore import verify as verify_log
    from serving.config import Settings
    from serving.state.db import make_engine
    from serving.state.store import StateStore
    from serving.trending import verify_snapshots

    chosen = [name for name, given in (("SNAPSHOT_ID", snapshot_id is not None), ("--all", all_),
                                       ("--since/--until", since is not None or until is not None)) if given]
    if len(chosen) != 1:
        _fail(f"give exactly one of SNAPSHOT_ID, --all, --since/--until (got {', '.join(chosen) or 'none'})")
    start, end = _moment("--since", since), _moment("--until", until)
    if start is not None and end is not None and start >= end:
        _fail(f"--since: must be before --until ({since} >= {until})")
    if snapshot_id is not None:
        try:
            moment = request_id_time(snapshot_id)
        except ValueError:
            _fail(f"SNAPSHOT_ID: not a snapshot id (a UUIDv7 such as a served list's snapshot_id): {snapshot_id!r}")
        start, end = moment - timedelta(seconds=1), moment + timedelta(minutes=30)  # logged right after it is made
    try:
        settings = Settings()
    except (ValidationError, ValueError) as exc:
        _fail(f"configuration: {' '.join(str(exc).split())[:300]}")
    log_dir = settings.logs.dir
    if not log_dir.is_dir():
        _fail(f"RECSYS_LOG_DIR: not a directory: '{log_dir}'")
    if not skip_log_check:
        try:
            report = verify_log(log_dir, settings.logs.key())
        except (LogStoreError, ValueError) as exc:
            _fail(f"RECSYS_LOG_HMAC_KEY: {exc}")
        if not report.ok:
            for problem in report.problems[:20]:
                typer.echo(f"log: {problem}")
            typer.echo(f"the log is damaged or tampered with ({report.summary}); `recsys logs verify` lists every problem")
            raise typer.Exit(1)
    store = StateStore(make_engine(settings.database_url))
    outcome = verify_snapshots(store, log_dir, start, end, snapshot_id, progress=None if quiet else typer.echo)
    for line in outcome.unreadable + outcome.mismatches:
        typer.echo(line)
    if snapshot_id is not None and outcome.snapshots == 0 and not outcome.unreadable:
        _fail(f"SNAPSHOT_ID: no snapshot {snapshot_id} in {log_dir}")
    verdict = "every snapshot reproduces" if outcome.ok else f"{len(outcome.mismatches)} mismatches"
    typer.echo(f"{outcome.snapshots} snapshots, {outcome.served} served lists: {verdict}")
    if not outcome.ok:
        raise typer.Exit(1)
