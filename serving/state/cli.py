"""`recsys db upgrade|current|revision`: the state database's schema (Alembic migrations).

Servers upgrade the database themselves at startup (`make_engine`); `recsys db upgrade` does it
ahead of a deployment, or after a restore. The URL is `--url`, else the servers' setting
(`RECSYS_DATABASE_URL`, default the SQLite file under var/).
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The state database's schema: upgrade, current revision, new migrations.", no_args_is_help=True)

UrlOption = Annotated[
    str | None, typer.Option(help="Database URL (default: RECSYS_DATABASE_URL, else the SQLite file under var/).")
]


def _fail(message: str) -> None:
    typer.secho(f"error: {' '.join(message.split())}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _url(url: str | None) -> str:
    if url:
        return url
    from pydantic import ValidationError

    from serving.config import Settings

    try:
        return Settings().database_url
    except (ValidationError, ValueError) as exc:
        _fail(f"configuration: {exc}")


def _reason(exc: BaseException) -> str:
    """The first line a person needs: the driver's message without SQLAlchemy's background link."""
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split())
    return (text or type(original).__name__)[:300]


@app.command("upgrade")
def upgrade(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the database to the latest migration.

    Safe while servers start (they wait for each other); a database made by a release before
    migrations is adopted (stamped, then upgraded)."""
    from serving.state.db import make_engine, safe_url
    from serving.state.migrate import upgrade as upgrade_schema

    url = _url(url)
    try:
        engine = make_engine(url, upgrade=False)
        try:
            at = upgrade_schema(engine, revision)
        finally:
            engine.dispose()
    except Exception as exc:
        _fail(f"cannot upgrade the state database at {safe_url(url)}: {_reason(exc)}")
    typer.echo(f"{safe_url(url)}: at revision {at}")


@app.command("current")
def current(url: UrlOption = None) -> None:
    """Print the database's revision and whether it is the latest."""
    from serving.state import migrate
    from serving.state.db import make_engine, safe_url

    url = _url(url)
    try:
        engine = make_engine(url, upgrade=False)
        try:
            with engine.connect() as conn:
                found, legacy = migrate.current(conn), migrate.is_legacy(conn)
        finally:
            engine.dispose()
    except Exception as exc:
        _fail(f"cannot read the state database at {safe_url(url)}: {_reason(exc)}")
    head = migrate.head()
    if found is None:
        state = "made by a release before migrations (adopted on upgrade)" if legacy else "empty"
    else:
        state = "latest" if found == head else f"behind: latest is {head}"
    typer.echo(f"{safe_url(url)}: {found or 'no revision'} ({state})")


@app.command("revision")
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the migration does.")],
    autogenerate: Annotated[
        bool, typer.Option(help="Write the operations that bring a database at the latest revision to serving/state/db.py.")
    ] = True,
) -> None:
    """Write a new migration (for developers changing serving/state/db.py).

    The file goes to serving/state/migrations/versions/. Autogenerate compares db.py with a scratch
    SQLite database upgraded to the latest revision: review the file, and run the state tests (they
    run on PostgreSQL too) before committing."""
    import tempfile
    from pathlib import Path

    from alembic import command

    from serving.state import migrate
    from serving.state.db import make_engine

    number = max((int(s.revision) for s in migrate.script_directory().walk_revisions() if s.revision.isdigit()), default=0)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        make_engine(url).dispose()
        script = command.revision(migrate.alembic_config(url), message=message, autogenerate=autogenerate,
                                  rev_id=f"{number + 1:04d}")
    typer.echo(f"wrote {script.path}")
