"""The state database's schema is made by Alembic migrations, on SQLite and PostgreSQL alike:
an empty database is upgraded to exactly the schema the code describes, a database made by the
release before migrations (`metadata.create_all`, no alembic_version) is recognised, stamped and
upgraded with its data, workers starting together migrate once, and `recsys db upgrade` works
and fails in one line."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    insert,
    text,
)

from serving.state import db, migrate
from serving.state.cli import app as db_cli
from serving.state.db import make_engine
from serving.state.store import StateStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def previous_release_metadata(user_item_index: bool) -> MetaData:
    """The tables of the release before migrations (`git show 54b04fe:serving/state/db.py`), which
    made them with `metadata.create_all`; its last version (77a2641) added ix_events_user_item."""
    metadata = MetaData()
    Table("user_profiles", metadata,
          Column("user_id", String(128), primary_key=True),
          Column("age", Integer, nullable=True),
          Column("created_at", DateTime(timezone=True), nullable=True))
    Table("user_settings", metadata,
          Column("user_id", String(128), primary_key=True),
          Column("personalization", Boolean, nullable=False, default=True),
          Column("minor_mode", Boolean, nullable=True),
          Column("updated_at", DateTime(timezone=True), nullable=False))
    Table("user_tags", metadata,
          Column("user_id", String(128), primary_key=True),
          Column("tag", String(128), primary_key=True),
          Column("state", String(16), nullable=False),
          Column("updated_at", DateTime(timezone=True), nullable=False))
    Table("served_pages", metadata,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("request_id", String(64), nullable=False, unique=True),
          Column("user_id", String(128), nullable=False),
          Column("surface", String(32), nullable=False),
          Column("session_id", String(64), nullable=False),
          Column("page", Integer, nullable=False),
          Column("items", JSON, nullable=False),
          Column("categories", JSON, nullable=False),
          Column("contents", JSON, nullable=False),
          Column("created_at", DateTime(timezone=True), nullable=False),
          Index("ix_served_session", "user_id", "surface", "session_id", "page"),
          Index("ix_served_recent", "user_id", "id"))
    Table("interventions", metadata,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("kind", String(16), nullable=False),
          Column("surface", String(32), nullable=True),
          Column("item_id", String(128), nullable=True),
          Column("category", String(128), nullable=True),
          Column("position", Integer, nullable=True),
          Column("factor", Float, nullable=True),
          Column("operator", String(128), nullable=False),
          Column("reason", Text, nullable=False),
          Column("created_at", DateTime(timezone=True), nullable=False),
          Column("expires_at", DateTime(timezone=True), nullable=True),
          Column("revoked_at", DateTime(timezone=True), nullable=True),
          Column("revoked_by", String(128), nullable=True))
    Table("complaints", metadata,
          Column("id", String(64), primary_key=True),
          Column("kind", String(16), nullable=False),
          Column("subject_type", String(16), nullable=False),
          Column("subject_id", String(256), nullable=True),
          Column("user_id", String(128), nullable=False),
          Column("text", Text, nullable=False),
          Column("status", String(16), nullable=False),
          Column("resolution", Text, nullable=True),
          Column("created_at", DateTime(timezone=True), nullable=False),
          Column("updated_at", DateTime(timezone=True), nullable=False),
          Column("acknowledge_due", DateTime(timezone=True), nullable=False),
          Column("resolve_due", DateTime(timezone=True), nullable=False))
    events = Table("events", metadata,
                   Column("event_id", String(128), primary_key=True),
                   Column("user_id", String(128), nullable=False),
                   Column("item_id", String(128), nullable=False),
                   Column("type", String(16), nullable=False),
                   Column("ts", DateTime(timezone=True), nullable=False),
                   Column("received_at", DateTime(timezone=True), nullable=False),
                   Index("ix_events_ts", "ts"))
    if user_item_index:
        Index("ix_events_user_item", events.c.user_id, events.c.item_id)
    Table("usage", metadata,
          Column("user_id", String(128), primary_key=True),
          Column("day", String(10), primary_key=True),
          Column("last_activity", DateTime(timezone=True), nullable=False),
          Column("seconds_used", Float, nullable=False))
    Table("feature_entries", metadata,
          Column("id", String(64), primary_key=True),
          Column("entry", JSON, nullable=False),
          Column("created_at", DateTime(timezone=True), nullable=False),
          Column("removed_at", DateTime(timezone=True), nullable=True),
          Column("removed_by", String(128), nullable=True))
    Table("state_versions", metadata,
          Column("name", String(32), primary_key=True),
          Column("version", Integer, nullable=False))
    return metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request, tmp_path):
    """Make URLs of new, empty databases on one backend."""
    made = []

    def make(name: str = "db") -> str:
        made.append(name)
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'{name}-{len(made)}.db'}"
        return request.getfixturevalue("postgres").create_database(f"mig_{name}")

    return make


def schema_of(url: str) -> dict:
    """Everything that defines the schema, from the database's own catalog (alembic_version aside)."""
    engine = create_engine(db.normalize_url(url))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # what the schema means, not the text it was made with (ALTERs differ)
                tables = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                           "'sqlite_%' AND name != 'alembic_version' ORDER BY name")).scalars().all()
                schema = {}
                for table in tables:
                    indexes = conn.execute(text(f"PRAGMA index_list('{table}')")).all()
                    schema[table] = {
                        "columns": [tuple(r) for r in conn.execute(text(f"PRAGMA table_xinfo('{table}')"))],
                        "indexes": sorted((r.name if r.origin == "c" else r.origin, r.unique, r.partial, tuple(
                            c.name for c in conn.execute(text(f"PRAGMA index_info('{r.name}')")))) for r in indexes),
                        "foreign_keys": [tuple(r) for r in conn.execute(text(f"PRAGMA foreign_key_list('{table}')"))],
                    }
                return schema
            columns = conn.execute(text(
                "SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, is_nullable, "
                "column_default FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name != 'alembic_version' ORDER BY table_name, ordinal_position")).all()
            constraints = conn.execute(text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text != 'alembic_version' "
                "ORDER BY 1, 2")).all()
            indexes = conn.execute(text(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename != 'alembic_version' ORDER BY 1, 2")).all()
            sequences = conn.execute(text("SELECT sequence_name, data_type FROM information_schema.sequences "
                                          "ORDER BY 1")).all()
            return {"columns": [tuple(r) for r in columns], "constraints": [tuple(r) for r in constraints],
                    "indexes": [tuple(r) for r in indexes], "sequences": [tuple(r) for r in sequences]}
    finally:
        engine.dispose()


def reference_schema(new_url) -> dict:
    """The schema `metadata.create_all` of today's serving/state/db.py makes."""
    url = new_url("reference")
    engine = create_engine(db.normalize_url(url))
    db.metadata.create_all(engine)
    engine.dispose()
    return schema_of(url)


def revision_and_drift(url: str) -> tuple[str | None, list]:
    engine = create_engine(db.normalize_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return context.get_current_revision(), compare_metadata(context, db.metadata)
    finally:
        engine.dispose()


def test_an_empty_database_is_upgraded_to_exactly_the_schema_of_the_code(new_url):
    url = new_url("empty")
    engine = make_engine(url)
    engine.dispose()
    assert revision_and_drift(url) == (migrate.head(), [])  # the tables the code uses are the tables migrations made
    schema = schema_of(url)
    assert schema == reference_schema(new_url)
    assert "ix_events_user_item" in str(schema) and "ix_served_session" in str(schema)

    config = migrate.alembic_config(url)  # the initial migration can be undone
    command.downgrade(config, "base")
    with create_engine(db.normalize_url(url)).connect() as conn:
        assert inspect(conn).get_table_names() == ["alembic_version"]
    assert migrate.upgrade(make_engine(url, upgrade=False)) == migrate.head()
    assert schema_of(url) == schema


@pytest.mark.parametrize("release", ["54b04fe", "77a2641"])
def test_a_database_made_by_the_previous_release_is_stamped_upgraded_and_keeps_its_data(new_url, release):
    url = new_url(f"legacy_{release}")
    legacy = previous_release_metadata(user_item_index=release == "77a2641")
    engine = create_engine(db.normalize_url(url))
    legacy.create_all(engine)  # what that release's make_engine did
    t = legacy.tables
    with engine.begin() as conn:
        conn.execute(insert(t["user_profiles"]).values(user_id="u1", age=15, created_at=T0))
        conn.execute(insert(t["user_settings"]).values(user_id="u1", personalization=False, minor_mode=True, updated_at=T0))
        conn.execute(insert(t["interventions"]).values(kind="block", item_id="i1", operator="op", reason="r", created_at=T0))
        conn.execute(insert(t["events"]).values(event_id="e1", user_id="u1", item_id="i1", type="click", ts=T0, received_at=T0))
        conn.execute(insert(t["usage"]).values(user_id="u1", day="2026-03-02", last_activity=T0, seconds_used=90.0))
        conn.execute(insert(t["state_versions"]).values(name="interventions", version=7))
    engine.dispose()
    with create_engine(db.normalize_url(url)).connect() as conn:
        assert migrate.is_legacy(conn) and migrate.current(conn) is None

    engine = make_engine(url)
    assert revision_and_drift(url) == (migrate.head(), [])
    assert schema_of(url) == reference_schema(new_url)  # the missing index added, nothing else changed
    store = StateStore(engine)
    user = store.load_user("u1")
    assert (user.age, user.personalization, user.minor_mode) == (15, False, True)
    assert store.version("interventions") == 7 and store.list_interventions()[0]["created_at"] == T0
    assert store.event_items("u1") == ["i1"] and store.get_usage("u1", "2026-03-02") == (T0, 90.0)
    assert store.add_usage("u1", "2026-03-02", T0.replace(second=30), 300, 60) == (T0.replace(second=30), 120.0)
    engine.dispose()
    make_engine(url).dispose()  # a second start: nothing to do
    assert revision_and_drift(url)[0] == migrate.head()


def test_the_seen_set_is_backfilled_from_the_events_of_a_database_at_0006(new_url):
    """0007 adds `seen_items` (one row per user and item) and fills it from the events already
    stored, so every item a user had an event for stays seen after the upgrade, however old."""
    url = new_url("seen_backfill")
    command.upgrade(migrate.alembic_config(url), "0006")
    engine = create_engine(db.normalize_url(url))
    rows = [("e1", "u1", "i1", "impression"), ("e2", "u1", "i1", "click"), ("e3", "u1", "i2", "like"),
            ("e4", "u2", "i1", "impression")]
    with engine.begin() as conn:
        assert "seen_items" not in inspect(conn).get_table_names()
        conn.execute(insert(db.events), [{"event_id": e, "user_id": u, "item_id": i, "type": k, "ts": T0, "received_at": T0}
                                         for e, u, i, k in rows])
    engine.dispose()

    engine = make_engine(url)
    assert revision_and_drift(url) == (migrate.head(), [])
    with engine.connect() as conn:
        seen = conn.execute(text("SELECT user_id, item_id FROM seen_items ORDER BY user_id, item_id")).all()
    assert [tuple(row) for row in seen] == [("u1", "i1"), ("u1", "i2"), ("u2", "i1")]
    store = StateStore(engine)
    assert sorted(store.event_items("u1")) == ["i1", "i2"] and store.event_items("u2") == ["i1"]
    store.add_events([{"event_id": "e5", "user_id": "u2", "item_id": "i3", "type": "click", "ts": T0, "received_at": T0}])
    assert sorted(store.event_items("u2")) == ["i1", "i3"]
    engine.dispose()
    command.downgrade(migrate.alembic_config(url), "0006")  # and undone
    with create_engine(db.normalize_url(url)).connect() as conn:
        assert "seen_items" not in inspect(conn).get_table_names()


def test_history_erasures_come_after_the_seen_set_and_keep_the_events_of_a_database_at_0007(new_url):
    """0008 adds the erasure markers (`history_erasures`, empty: nobody has erased anything yet) after
    0007, keeps every event and seen row, and is undone without touching them."""
    url = new_url("erasures")
    command.upgrade(migrate.alembic_config(url), "0007")
    engine = create_engine(db.normalize_url(url))
    with engine.begin() as conn:
        assert "history_erasures" not in inspect(conn).get_table_names()
        conn.execute(insert(db.events), [{"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": T0,
                                          "received_at": T0}])
        conn.execute(insert(db.seen_items), [{"user_id": "u1", "item_id": "i1"}])
    engine.dispose()
    assert migrate.head() == "0008"
    engine = make_engine(url)
    assert revision_and_drift(url) == (migrate.head(), [])
    store = StateStore(engine)
    exported = store.history("u1", 10)
    assert (exported.events_stored, exported.seen_items, exported.erased_at) == (1, 1, None)
    assert store.erase_history("u1", T0) == (1, 1, T0) and store.load_user("u1").history_erased_at == T0
    engine.dispose()
    command.downgrade(migrate.alembic_config(url), "0007")
    with create_engine(db.normalize_url(url)).connect() as conn:
        assert "history_erasures" not in inspect(conn).get_table_names()
        assert "seen_items" in inspect(conn).get_table_names()


CHILD = """
import pathlib, sys, time
from serving.state import migrate
from serving.state.db import make_engine
url, ready, go = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
engine = make_engine(url)
with engine.connect() as conn:
    print(migrate.current(conn))
"""


def test_workers_starting_together_migrate_once(new_url, tmp_path):
    """3 processes start on an empty database at the same moment: all come up at the latest
    revision, the schema made once (with the lock made a no-op, PostgreSQL failed one of them on a
    duplicate table in 2 runs of 5; threads of one process hung in Alembic's global context)."""
    url = new_url("together")
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", CHILD, url, str(tmp_path / f"ready-{i}"), str(go)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{i}").exists() for i in range(3)):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), "a worker did not get ready"
        time.sleep(0.01)
    go.touch()
    outcomes = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0] * 3, [err[-800:] for _, err in outcomes]
    assert [out.strip() for out, _ in outcomes] == [migrate.head()] * 3
    assert revision_and_drift(url) == (migrate.head(), [])
    with create_engine(db.normalize_url(url)).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_threads_starting_on_a_previous_release_database_adopt_it_once(new_url):
    url = new_url("legacy_together")
    engine = create_engine(db.normalize_url(url))
    previous_release_metadata(user_item_index=False).create_all(engine)
    engine.dispose()
    barrier, results = threading.Barrier(4), []

    def start():
        barrier.wait(timeout=30)
        engine = make_engine(url)
        with engine.connect() as conn:
            results.append(migrate.current(conn))
        engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [migrate.head()] * 4
    assert revision_and_drift(url) == (migrate.head(), [])


def test_a_sqlite_worker_starting_while_another_writes_a_rollback_journal_database_waits(tmp_path):
    """Switching a database still in rollback-journal mode to WAL fails at once with "database is
    locked" while another connection holds its write lock (SQLite's busy handler does not wait
    there): a worker starting then waits for the writer instead of failing (the race of workers
    starting together on a new or previous-release database)."""
    import sqlite3

    path = tmp_path / "rollback.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")  # the write lock, as a worker mid-migration holds it
    writer.execute("INSERT INTO t VALUES (1)")
    outcome: list = []

    def start():
        started = time.monotonic()
        try:
            engine = make_engine(f"sqlite:///{path}", upgrade=False)
            with engine.connect() as conn:
                outcome.append((conn.exec_driver_sql("PRAGMA journal_mode").scalar(), time.monotonic() - started))
            engine.dispose()
        except Exception as exc:  # reported below
            outcome.append(exc)

    worker = threading.Thread(target=start)
    worker.start()
    time.sleep(0.5)
    assert not outcome  # still waiting for the writer
    writer.execute("COMMIT")
    worker.join(timeout=30)
    writer.close()
    assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
    assert outcome[0][0] == "wal" and outcome[0][1] >= 0.5


def test_startup_waits_while_another_process_holds_the_migration_lock(new_url):
    url = new_url("locked")
    holder = make_engine(url, upgrade=False)
    done = threading.Event()
    errors = []

    def start():
        try:
            make_engine(url).dispose()
        except Exception as exc:  # reported below
            errors.append(exc)
        done.set()

    with migrate.migration_lock(holder):
        waiter = threading.Thread(target=start)
        waiter.start()
        assert not done.wait(0.5)  # it waits for the lock...
        with holder.connect() as conn:
            assert "events" not in inspect(conn).get_table_names()  # ...before touching the schema
    assert done.wait(30) and not errors
    waiter.join()
    with holder.connect() as conn:
        assert migrate.current(conn) == migrate.head()
    other = make_engine(url, upgrade=False)  # another process's engine: its own connections, its own lock file handle
    with migrate.migration_lock(holder), pytest.raises(migrate.MigrationError, match="held the migration lock"):
        with migrate.migration_lock(other, timeout_s=0.2):
            pass
    other.dispose()
    holder.dispose()


def test_a_database_from_a_newer_release_is_refused(new_url):
    url = new_url("newer")
    make_engine(url).dispose()
    engine = create_engine(db.normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(migrate.MigrationError, match="revision '9999', which this release does not know"):
        make_engine(url)


def test_postgres_urls_without_a_driver_mean_psycopg():
    assert db.normalize_url("postgresql://u:p@h:5/d").drivername == "postgresql+psycopg"
    assert db.normalize_url("postgres://u:p@h:5/d").drivername == "postgresql+psycopg"
    assert db.normalize_url("postgresql+psycopg://u@h/d").drivername == "postgresql+psycopg"
    assert db.normalize_url("sqlite:///x.db").drivername == "sqlite"
    assert db.safe_url("postgresql://user:secret@h:5/d") == "postgresql+psycopg://user:***@h:5/d"


# -- recsys db -----------------------------------------------------------------------------------------
def test_recsys_db_upgrade_and_current(new_url):
    from typer.testing import CliRunner

    url = new_url("cli")
    runner = CliRunner()
    before = runner.invoke(db_cli, ["current", "--url", url])
    assert before.exit_code == 0 and "no revision (empty)" in before.output
    upgraded = runner.invoke(db_cli, ["upgrade", "--url", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output.strip().endswith(f"at revision {migrate.head()}")
    after = runner.invoke(db_cli, ["current", "--url", url])
    assert f"{migrate.head()} (latest)" in after.output
    assert revision_and_drift(url) == (migrate.head(), [])


def test_recsys_db_upgrade_fails_in_one_line_naming_the_url(postgres, tmp_path):
    """Through the real `recsys` command: a wrong database names the URL (password masked), exit 1."""
    from sqlalchemy.engine import make_url

    port = make_url(postgres.url).port
    url = f"postgresql://nobody:s3cret@127.0.0.1:{port}/missing"
    result = subprocess.run([str(Path(sys.executable).with_name("recsys")), "db", "upgrade", "--url", url],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "s3cret" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error: cannot upgrade the state database at postgresql+psycopg://nobody:***@127.0.0.1:{port}"
                               "/missing: ")
    assert 'role "nobody" does not exist' in lines[0]



def test_recsys_db_upgrade_names_a_sqlite_path_it_cannot_use(tmp_path):
    from typer.testing import CliRunner

    (tmp_path / "file").write_text("not a folder")
    url = f"sqlite:///{tmp_path}/file/state.db"
    result = CliRunner().invoke(db_cli, ["upgrade", "--url", url])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"error: cannot upgrade the state database at {url}: database_url: cannot create folder")
