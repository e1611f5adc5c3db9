"""Bringing a state database to the latest migration (serving/state/migrations/), safely.

`upgrade(engine)` is what `make_engine` runs at startup and `recsys db upgrade` runs on demand:

- a database already at the latest revision costs two small queries and no lock (every worker
  start after the first);
- otherwise it takes the migration lock, looks again (another worker may have just done it) and
  upgrades: a PostgreSQL advisory lock (session level: the server drops it when a crashed worker's
  connection goes), or for SQLite an exclusive `flock` on `<database>-migrations.lock` beside the
  file (dropped by the kernel when the process ends). Workers that start together wait for the
  first one and find the work done. The lock also keeps threads of one process apart (each
  takes it on its own connection or file handle): Alembic's context is global to a process;
- a database made by a release before migrations (tables from `metadata.create_all`, no
  `alembic_version` table) is adopted: what that release could lack is added (`CREATE ... IF NOT
  EXISTS` with the initial migration's own definitions), it is stamped at the initial revision,
  then upgraded like any other;
- a database at a revision this release does not know (made by a newer release) is refused.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("recsys.serving.state")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the initial migration: the schema of the release before migrations
MIGRATION_LOCK_KEY = int.from_bytes(b"recsysdb", "big")  # pg_advisory_lock key (fits a signed bigint)
LOCK_TIMEOUT_S = 300.0


class MigrationError(RuntimeError):
    """The database cannot be brought to this release's schema (the message says why)."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the state migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url:
        config.set_main_option("sqlalchemy.url", str(url).replace("%", "%%"))
    return config


@cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The latest revision this release knows."""
    return script_directory().get_current_head()


def current(connection: Connection) -> str | None:
    """The database's revision; None when it has no alembic_version table (empty, or made by a
    release before migrations: see `is_legacy`)."""
    return MigrationContext.configure(connection).get_current_revision()


def is_legacy(connection: Connection) -> bool:
    """Made by a release before migrations: some of the initial tables, no alembic_version."""
    tables = set(inspect(connection).get_table_names())
    return "alembic_version" not in tables and bool(tables & set(_baseline_module().TABLES))


def upgrade(engine: Engine, revision: str = "head", lock_timeout_s: float = LOCK_TIMEOUT_S) -> str:
    """Bring the database to `revision` (the latest by default); returns the revision it is at."""
    script = script_directory()
    target = script.get_current_head() if revision == "head" else revision
    with engine.connect() as conn:
        if current(conn) == target:  # the common case: nothing to do, no lock taken
            return target
    with migration_lock(engine, lock_timeout_s) as conn:
        found = current(conn)  # again, under the lock: another worker may have upgraded meanwhile
        if found is not None and found not in {s.revision for s in script.walk_revisions()}:
            raise MigrationError(f"the database is at revision {found!r}, which this release does not know "
                                 f"(its latest is {target!r}): was it upgraded by a newer release?")
        if found is None and is_legacy(conn):
            _adopt(conn)
            found = BASELINE
        conn.commit()  # Alembic runs its own transactions on a connection that is not in one
        if found != target:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.commit()
            log.info("state database upgraded from %s to %s", found or "empty", target)
    return target


def _baseline_module():
    return script_directory().get_revision(BASELINE).module


def _adopt(conn: Connection) -> None:
    """Add what a create_all-made database could lack, then stamp it at the initial revision."""
    context = MigrationContext.configure(conn)
    with Operations.context(context):
        _baseline_module().create_schema(if_not_exists=True)
    context.stamp(script_directory(), BASELINE)
    conn.commit()
    log.info("state database made by a release before migrations: adopted and stamped at %s", BASELINE)


@contextmanager
def migration_lock(engine: Engine, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[Connection]:
    """A connection held under the cross-process migration lock of this database."""
    deadline = time.monotonic() + timeout_s
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            while not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}).scalar():
                conn.rollback()
                _wait(deadline, timeout_s)
            conn.commit()
            try:
                yield conn
            finally:
                try:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    conn.commit()
                except Exception:  # closing the session is what releases the lock then
                    conn.invalidate()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        with engine.connect() as conn:  # an in-memory database: no other process can see it
            yield conn
        return
    with open(f"{database}-migrations.lock", "a") as lock_file:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                _wait(deadline, timeout_s)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _wait(deadline: float, timeout_s: float) -> None:
    if time.monotonic() > deadline:
        raise MigrationError(f"another process has held the migration lock for more than {timeout_s:.0f} s")
    time.sleep(0.05)
