"""Sessions and CSRF protection of the pages: one signed cookie per area, a token in every form.

A session is a cookie signed with the console secret (itsdangerous, timestamped): `{"n": nonce,
"who": name or null, "until": unix seconds or absent}`, HttpOnly, SameSite=Strict, path-scoped to its area (/console, /me). Every
form carries `csrf_token` = HMAC(secret, area + nonce); a POST without a matching token is refused
with 403 before anything else runs. Logging in rotates the nonce (no session fixation); the
account behind `who` is read again on every request by the area's code. A session made from a
credential that expires (the identity provider's token on /me) ends when it does (`until`, checked
against the service clock), not `console.session_hours` later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

CSRF_FIELD = "csrf_token"


@dataclass
class Session:
    nonce: str
    who: str | None
    fresh: bool = False  # not from a valid cookie: must be set on the response
    until: float | None = None  # unix seconds: the session ends then (the credential it came from expires)

    def csrf_token(self, secret: str, area: str) -> str:
        return hmac.new(secret.encode(), f"{area}:{self.nonce}".encode(), hashlib.sha256).hexdigest()


class SessionCookies:
    """Read, write and check the session cookie of one area."""

    def __init__(self, area: str, path: str):
        self.area = area
        self.path = path
        self.cookie = f"recsys_{area}"

    def _serializer(self, request: Request) -> tuple[URLSafeTimedSerializer, str, float]:
        services = request.app.state.services
        secret = services.accounts.secret
        max_age = services.settings.console.session_hours * 3600
        return URLSafeTimedSerializer(secret, salt=f"recsys-session-{self.area}"), secret, max_age

    def load(self, request: Request) -> Session:
        """The request's session, or a new anonymous one."""
        serializer, _, max_age = self._serializer(request)
        raw = request.cookies.get(self.cookie)
        if raw and len(raw) < 4096:
            try:
                data = serializer.loads(raw, max_age=max_age)
                until = data.get("until") if isinstance(data, dict) else None
                ended = isinstance(until, (int, float)) and request.app.state.services.clock().timestamp() >= until
                if isinstance(data, dict) and isinstance(data.get("n"), str) and not ended:
                    who = data.get("who")
                    return Session(data["n"], who if isinstance(who, str) else None,
                                   until=float(until) if isinstance(until, (int, float)) else None)
            except BadSignature:
                pass
        return Session(secrets.token_urlsafe(24), None, fresh=True)

    def save(self, request: Request, response: Response, session: Session) -> None:
        serializer, _, max_age = self._serializer(request)
        data = {"n": session.nonce, "who": session.who, **({"until": session.until} if session.until is not None else {})}
        response.set_cookie(self.cookie, serializer.dumps(data), max_age=int(max_age),
                            path=self.path, httponly=True, samesite="strict", secure=request.url.scheme == "https")

    def login(self, who: str, until: float | None = None) -> Session:
        """A new session (new nonce: no session fixation) for `who`, ending at `until` when given."""
        return Session(secrets.token_urlsafe(24), who, fresh=True, until=until)

    def token(self, request: Request, session: Session) -> str:
        return session.csrf_token(self._serializer(request)[1], self.area)

    def check_csrf(self, request: Request, session: Session, submitted: str | None) -> None:
        """403 unless the form's token belongs to this session."""
        expected = self.token(request, session)
        if session.fresh or not submitted or not hmac.compare_digest(expected, submitted):
            raise HTTPException(403, detail=f"{CSRF_FIELD}: missing or invalid; reload the page and submit the form again")
