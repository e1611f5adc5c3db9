"""Who is calling: user authentication for every route that reads or changes a user's state.

A user route names its user (in the path, the query or the body); the caller must prove to be
that user, or anyone who knows an id could read a person's interest profile or switch their
personalization off. Three modes (`Settings.auth.mode`):

- `jwt` (the default): `Authorization: Bearer <JWT>` verified with PyJWT: signature (a shared
  HS256 secret, a PEM public key, or a JWKS file/URL, chosen by `kid`), expiry, audience and,
  when set, issuer. The token's `sub` must equal the user the request names.
- `gateway`: a trusted gateway in front authenticates users and says who with
  `X-Authenticated-User`, `X-Authenticated-At` (unix seconds) and `X-Authenticated-Signature`
  (hex HMAC-SHA256 of "user\\nat" with a shared secret); stale or unsigned claims are refused.
- `development`: the named user is trusted, as in `make serve` and the README's curl examples.
  The server logs a warning at start and /healthz reports the mode; never deploy it.

The admin bearer token (operators, automation) is separate (serving/deps.py); `POST /v1/events`
also accepts it, for a backend that forwards many users' events.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, SecretStr

AuthMode = Literal["jwt", "gateway", "development"]
USER_HEADER = "x-authenticated-user"
AT_HEADER = "x-authenticated-at"
SIGNATURE_HEADER = "x-authenticated-signature"


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: AuthMode = "jwt"
    # jwt: exactly one key source
    jwt_secret: SecretStr | None = Field(None, description="HS256/384/512 shared secret")
    jwt_public_key: str | None = Field(None, description="PEM public key (RS*, ES*, PS*, EdDSA)")
    jwks_file: Path | None = Field(None, description="a JWKS document on disk; keys chosen by the token's kid")
    jwks_url: str | None = Field(None, description="the identity provider's JWKS endpoint (fetched and cached)")
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA", "HS256")
    audience: str = "recsys"
    issuer: str | None = None
    leeway_seconds: int = Field(30, ge=0, le=600)
    # gateway
    gateway_secret: SecretStr | None = None
    gateway_max_age_seconds: int = Field(300, ge=1, le=86_400)

    def check(self) -> None:
        """ValueError naming the missing setting when this mode cannot authenticate anyone; the
        server runs it before it starts (a config without keys is fine for the offline tools)."""
        if self.mode == "jwt":
            sources = [s for s in (self.jwt_secret, self.jwt_public_key, self.jwks_file, self.jwks_url) if s]
            if len(sources) != 1:
                raise ValueError(
                    "auth: mode 'jwt' needs exactly one of jwt_secret, jwt_public_key, jwks_file, jwks_url "
                    "(e.g. RECSYS_AUTH__JWT_SECRET=...), or RECSYS_AUTH__MODE=development for a local server"
                )
            if self.jwks_file is not None and not self.jwks_file.is_file():
                raise ValueError(f"auth.jwks_file: no such file: {self.jwks_file}")
        if self.mode == "gateway" and not self.gateway_secret:
            raise ValueError("auth: mode 'gateway' needs gateway_secret (RECSYS_AUTH__GATEWAY_SECRET=...)")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: `subject` is the user id, or None in development mode."""

    mode: AuthMode
    subject: str | None

    def require(self, user_id: str) -> None:
        """403 unless the caller is `user_id` (always passes in development mode)."""
        if self.mode != "development" and self.subject != user_id:
            raise HTTPException(403, detail="forbidden: the authenticated user may act only for themselves")


class Authenticator:
    def __init__(self, config: AuthConfig):
        config.check()
        self.config = config
        self._jwks_client = jwt.PyJWKClient(config.jwks_url, cache_keys=True) if config.jwks_url else None
        self._jwks = jwt.PyJWKSet.from_dict(json.loads(config.jwks_file.read_text())) if config.jwks_file else None

    def authenticate(self, headers) -> Principal:
        mode = self.config.mode
        if mode == "development":
            return Principal(mode, None)
        if mode == "gateway":
            return Principal(mode, self._gateway_user(headers))
        return Principal(mode, self._jwt_subject(headers.get("authorization")))

    def token_expiry(self, token: str) -> float | None:
        """When a bearer token `authenticate` has just accepted stops being valid (its `exp`, unix
        seconds, leeway included); None for other modes. A page session made from it ends then."""
        if self.config.mode != "jwt":
            return None
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        return float(exp) + self.config.leeway_seconds if isinstance(exp, (int, float)) else None

    def _jwt_subject(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("user routes need 'Authorization: Bearer <token>' (a JWT from the identity provider)")
        config = self.config
        # A shared secret verifies only HMAC tokens, a public key only signatures: a token cannot
        # pick HS256 to have the public key used as an HMAC secret.
        symmetric = config.jwt_secret is not None
        algorithms = [a for a in config.algorithms if a.upper().startswith("HS") == symmetric]
        try:
            claims = jwt.decode(
                token, self._key(token), algorithms=algorithms, audience=config.audience,
                issuer=config.issuer, leeway=config.leeway_seconds,
                options={"require": ["exp", "sub", "aud"], "verify_iss": config.issuer is not None},
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _unauthorized("invalid token: 'sub' must name the user")
        return subject

    def _key(self, token: str):
        config = self.config
        if config.jwt_secret is not None:
            return config.jwt_secret.get_secret_value()
        if config.jwt_public_key is not None:
            return config.jwt_public_key
        if self._jwks_client is not None:
            return self._jwks_client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._jwks.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidKeyError(f"no key with kid {kid!r} in {config.jwks_file}")

    def _gateway_user(self, headers) -> str:
        user, at, signature = headers.get(USER_HEADER), headers.get(AT_HEADER), headers.get(SIGNATURE_HEADER)
        if not (user and at and signature):
            raise _unauthorized(f"user routes need the gateway's {USER_HEADER}, {AT_HEADER} and {SIGNATURE_HEADER} headers")
        try:
            age = abs(time.time() - int(at))
        except ValueError:
            raise _unauthorized(f"{AT_HEADER}: unix seconds expected") from None
        if age > self.config.gateway_max_age_seconds:
            raise _unauthorized(f"{AT_HEADER}: the gateway's claim is {int(age)} s old")
        expected = gateway_signature(self.config.gateway_secret.get_secret_value(), user, at)
        if not hmac.compare_digest(expected, signature):
            raise _unauthorized(f"{SIGNATURE_HEADER}: does not match")
        return user


def gateway_signature(secret: str, user_id: str, at: str) -> str:
    """What the gateway sends in X-Authenticated-Signature for `user_id` at unix time `at`."""
    return hmac.new(secret.encode(), f"{user_id}\n{at}".encode(), hashlib.sha256).hexdigest()


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": 'Bearer realm="recsys"'})
