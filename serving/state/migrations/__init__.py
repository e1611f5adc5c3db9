"""Alembic migrations of the state database (serving/state/db.py); applied by
`serving.state.migrate.upgrade`, which `make_engine` and `recsys db upgrade` call."""
