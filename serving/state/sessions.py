"""Reads and writes of `web_sessions`: the pages' server-side sessions (serving/web/session.py).

A session id is `secrets.token_urlsafe(32)`, given once to the browser (inside the signed cookie)
and stored only as its SHA-256, so the table alone opens no session. Every page request reads one
row by primary key; a session counts only while it is of the asked kind, not revoked and not
expired (against the service clock the caller passes). The rows are in the shared database, so a
logout or a revocation on one worker holds on every worker from the next request.

A row that cannot be read (edited by hand, a database that does not answer) is no session: the
request goes on as logged out, and the row is counted in `recsys_unreadable_reads_total{kind=
"web_session"}` and logged, never a 500.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from serving import metrics
from serving.state import db

log = logging.getLogger(__name__)

Kind = Literal["me", "console"]
KINDS: tuple[str, ...] = get_args(Kind)
PRUNE_BATCH = 200  # expired rows deleted per login at most: a login never waits on a large delete
MAX_ID_CHARS = 128  # longer is not an id this module made; not even hashed


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class WebSession:
    """A live session as its row says: whose, of which area, until when."""

    kind: str
    subject: str
    created_at: datetime
    expires_at: datetime


def revoke_subject(conn: Connection, kind: str, subject: str, now: datetime) -> int:
    """Revoke every live session of `subject` in `kind`, in the caller's transaction (the operator
    store revokes in the same transaction that disables the account or changes its password)."""
    table = db.web_sessions
    return int(conn.execute(update(table).where(table.c.kind == kind, table.c.subject == subject,
                                                table.c.revoked_at.is_(None)).values(revoked_at=now)).rowcount)


class SessionStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def open(self, kind: Kind, subject: str, now: datetime, expires_at: datetime) -> str:
        """A new session of `subject` in `kind` until `expires_at`; returns its id (to put in the
        cookie; only its hash is stored). Prunes a bounded batch of expired rows first."""
        session_id = secrets.token_urlsafe(32)
        self.prune(now)
        with self.engine.begin() as conn:
            conn.execute(insert(db.web_sessions).values(id_hash=id_hash(session_id), kind=kind, subject=subject,
                                                         created_at=now, expires_at=expires_at))
        return session_id

    def lookup(self, kind: str, session_id: str, now: datetime) -> WebSession | None:
        """The live session behind `session_id` in `kind` (one read by primary key), else None: no
        such id, another area's, revoked, expired, or a row that cannot be read."""
        if not session_id or len(session_id) > MAX_ID_CHARS:
            return None
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(db.web_sessions).where(db.web_sessions.c.id_hash == id_hash(session_id))).first()
            if row is None:
                return None
            found = WebSession(row.kind, row.subject, row.created_at, row.expires_at)
            if found.kind not in KINDS or not isinstance(found.subject, str) or not isinstance(found.expires_at, datetime):
                raise ValueError(f"kind {found.kind!r}, subject {found.subject!r}, expires_at {found.expires_at!r}")
            live = row.revoked_at is None and now < found.expires_at
        except (SQLAlchemyError, ValueError, TypeError) as exc:
            log.warning("a %s session cannot be read and counts as logged out: %s", kind, " ".join(str(exc).split())[:200])
            metrics.UNREADABLE_READS.labels("web_session").inc()
            return None
        return found if live and found.kind == kind else None

    def revoke(self, session_id: str, now: datetime) -> bool:
        """End one session (logout); False when it was not live."""
        if not session_id or len(session_id) > MAX_ID_CHARS:
            return False
        table = db.web_sessions
        with self.engine.begin() as conn:
            return bool(conn.execute(update(table).where(table.c.id_hash == id_hash(session_id), table.c.revoked_at.is_(None))
                                     .values(revoked_at=now)).rowcount)

    def revoke_subject(self, kind: Kind, subject: str, now: datetime) -> int:
        """End every session of `subject` in `kind`; returns how many were live."""
        with self.engine.begin() as conn:
            return revoke_subject(conn, kind, subject, now)

    def prune(self, now: datetime, limit: int = PRUNE_BATCH) -> int:
        """Delete at most `limit` rows expired before `now` (revoked or not: either way they open
        nothing); returns how many."""
        table = db.web_sessions
        expired = select(table.c.id_hash).where(table.c.expires_at < now).limit(limit)
        with self.engine.begin() as conn:
            return int(conn.execute(delete(table).where(table.c.id_hash.in_(expired))).rowcount)
