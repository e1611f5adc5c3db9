"""Alembic environment of the state database.

Run by `serving.state.migrate` (which passes an open connection in `config.attributes`, after
taking the migration lock) and by `recsys db revision --autogenerate` (which compares
`serving.state.db.metadata` with a database at the latest revision).
"""

from __future__ import annotations

from alembic import context

from serving.state import db


def _render_item(kind: str, obj, autogen_context):
    """Autogenerate writes the application's UTC type as the plain type it stores: migrations stay frozen."""
    if kind == "type" and isinstance(obj, db.UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs) -> None:
    context.configure(target_metadata=db.metadata, compare_type=True, render_item=_render_item, **kwargs)


def _run(connection) -> None:
    # SQLite cannot ALTER most things: autogenerate writes batch (copy-and-move) operations there.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


config = context.config
if context.is_offline_mode():  # `--sql`: print the SQL for a URL's dialect
    _configure(url=db.normalize_url(config.get_main_option("sqlalchemy.url")), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _run(config.attributes["connection"])
else:
    engine = db.make_engine(config.get_main_option("sqlalchemy.url"), upgrade=False)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()
