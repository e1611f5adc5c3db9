"""Sessions and CSRF protection of the pages: a server-side session per login, a token in every form.

A logged-in session is a row of `web_sessions` (serving/state/sessions.py: subject, kind me |
console, created, expires, revoked), keyed by the hash of a random id; the browser's cookie holds
only that id, signed with the console secret (itsdangerous, timestamped), HttpOnly,
SameSite=Strict, path-scoped to its area (/console, /me). Every request reads the row (one read by
primary key), so logging out revokes the session for every copy of the cookie on every worker, and
disabling an operator or changing their password ends all their sessions. A row that cannot be
read is a logged-out session, never an error page. Before login the cookie holds a random nonce
only (no row: an anonymous visit writes nothing).

Every form carries `csrf_token` = HMAC(secret, area + nonce), the nonce being the session id once
logged in; a POST without a matching token is refused with 403 before anything else runs. Logging
in opens a new session (no session fixation); the account behind it is read again on every
request by the area's code. A session made from a credential that expires (the identity
provider's token on /me) ends when it does, not `console.session_hours` later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from serving.state.sessions import Kind

CSRF_FIELD = "csrf_token"


@dataclass
class Session:
    nonce: str  # the CSRF tokens' key: the session id when logged in, else a random nonce
    who: str | None
    fresh: bool = False  # not from a valid cookie: must be set on the response
    session_id: str | None = None  # the server-side session's id (logged in)

    def csrf_token(self, secret: str, area: str) -> str:
        return hmac.new(secret.encode(), f"{area}:{self.nonce}".encode(), hashlib.sha256).hexdigest()


def anonymous() -> Session:
    """A new session before login: a random nonce, no account, no row."""
    return Session(secrets.token_urlsafe(24), None, fresh=True)


class SessionCookies:
    """Read, write, open and end the sessions of one area."""

    def __init__(self, area: Kind, path: str):
        self.area: Kind = area
        self.path = path
        self.cookie = f"recsys_{area}"

    def _serializer(self, request: Request) -> tuple[URLSafeTimedSerializer, str, float]:
        services = request.app.state.services
        secret = services.accounts.secret
        max_age = services.settings.console.session_hours * 3600
        return URLSafeTimedSerializer(secret, salt=f"recsys-session-{self.area}"), secret, max_age

    def load(self, request: Request) -> Session:
        """The request's session (its row read from the database). An id whose session is unknown,
        revoked, expired or unreadable is a logged-out session; no cookie or a bad signature, a new
        anonymous one."""
        serializer, _, max_age = self._serializer(request)
        raw = request.cookies.get(self.cookie)
        if not raw or len(raw) >= 4096:
            return anonymous()
        try:
            data = serializer.loads(raw, max_age=int(max_age))
        except BadSignature:  # includes SignatureExpired
            return anonymous()
        if not isinstance(data, dict):
            return anonymous()
        services = request.app.state.services
        session_id, nonce = data.get("sid"), data.get("n")
        if isinstance(session_id, str):
            row = services.sessions.lookup(self.area, session_id, services.clock())
            if row is None:  # logged out: the same nonce, so a form posted from it meets "log in first", not a 403
                return Session(session_id, None)
            return Session(session_id, row.subject, session_id=session_id)
        return Session(nonce, None) if isinstance(nonce, str) and nonce else anonymous()

    def save(self, request: Request, response: Response, session: Session) -> None:
        serializer, _, max_age = self._serializer(request)
        data = {"sid": session.session_id} if session.session_id is not None else {"n": session.nonce}
        response.set_cookie(self.cookie, serializer.dumps(data), max_age=int(max_age),
                            path=self.path, httponly=True, samesite="strict", secure=request.url.scheme == "https")

    def login(self, request: Request, who: str, until: float | None = None) -> Session:
        """A new server-side session (a new id: no session fixation) for `who`, lasting
        `console.session_hours`, or until `until` (unix seconds) when that is sooner."""
        services = request.app.state.services
        now: datetime = services.clock()
        expires = now + timedelta(hours=services.settings.console.session_hours)
        if until is not None:
            expires = min(expires, datetime.fromtimestamp(until, UTC))
        session_id = services.sessions.open(self.area, who, now, expires)
        return Session(session_id, who, fresh=True, session_id=session_id)

    def logout(self, request: Request, session: Session) -> Session:
        """End `session` in the database (every copy of its cookie stops working); the new
        anonymous session to put in its place."""
        if session.session_id is not None:
            services = request.app.state.services
            services.sessions.revoke(session.session_id, services.clock())
        return anonymous()

    def token(self, request: Request, session: Session) -> str:
        return session.csrf_token(self._serializer(request)[1], self.area)

    def check_csrf(self, request: Request, session: Session, submitted: str | None) -> None:
        """403 unless the form's token belongs to this session."""
        expected = self.token(request, session)
        if session.fresh or not submitted or not hmac.compare_digest(expected, submitted):
            raise HTTPException(403, detail=f"{CSRF_FIELD}: missing or invalid; reload the page and submit the form again")
