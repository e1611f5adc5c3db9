"""Reads and writes of the `operators` table (named operator accounts, serving/operators.py).

Disabling an account or changing its password revokes every console session of the account
(`web_sessions`, serving/state/sessions.py) in the same transaction: a session opened before, or a
copy of its cookie, stops working from the next request on every worker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from serving.state import db
from serving.state.sessions import revoke_subject


class OperatorExists(ValueError):
    """An account with this name is already there."""


class OperatorStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, name: str, role: str, password_hash: str, now: datetime) -> dict:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(db.operators).values(name=name, role=role, password_hash=password_hash, created_at=now))
        except IntegrityError:
            raise OperatorExists(f"operator {name!r} already exists") from None
        return self.get(name)

    def get(self, name: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(db.operators).where(db.operators.c.name == name)).first()
        return dict(row._mapping) if row else None

    def list(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(db.operators).order_by(db.operators.c.name)).all()]

    def set_password(self, name: str, password_hash: str, now: datetime, *, revoke_sessions: bool = True) -> bool:
        """A new password; the account's console sessions end with the old one (`revoke_sessions`
        False only for a rehash of the same password at login)."""
        with self.engine.begin() as conn:
            changed = bool(conn.execute(update(db.operators).where(db.operators.c.name == name)
                                        .values(password_hash=password_hash)).rowcount)
            if changed and revoke_sessions:
                revoke_subject(conn, "console", name, now)
            return changed

    def disable(self, name: str, now: datetime) -> bool:
        """Disable the account and end its console sessions."""
        with self.engine.begin() as conn:
            changed = bool(conn.execute(update(db.operators).where(db.operators.c.name == name, db.operators.c.disabled_at.is_(None))
                                        .values(disabled_at=now)).rowcount)
            if changed:
                revoke_subject(conn, "console", name, now)
            return changed
