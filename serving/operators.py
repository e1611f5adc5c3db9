"""Named operator accounts: who changes the service by hand (Art. 7, Art. 11, Art. 14 (draft 13); rules in compliance/oversight.py).

Every admin request is made by an account with a name and a role, and that name (never a
self-declared header) is what the intervention, the complaint decision and the log record:

- people: accounts in the state database (`recsys operators add NAME --role ROLE`), password
  hashed with argon2id (argon2-cffi). `POST /v1/admin/login` and the console's login form both
  exchange name + password for a signed, expiring operator token (`op1.` + itsdangerous); the
  account and its role are read from the database on every request, so a disabled account or a
  changed role holds from the next request on every worker;
- automation: the admin bearer token (`RECSYS_ADMIN_TOKEN`) is the service account
  `console.service_account` with role `console.service_role`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from compliance.oversight import ROLES, Role
from serving.state.operators import OperatorStore

NAME_PATTERN = r"^[a-z][a-z0-9_.\-]{1,63}$"
MIN_PASSWORD_CHARS = 12
TOKEN_PREFIX = "op1."


class ConsoleConfig(BaseModel):
    """Operator accounts, their sessions, and the service account of the admin bearer token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Signs operator tokens, session cookies and CSRF tokens. None: derived from the admin token, so
    # every worker of one deployment agrees without another setting; set it to rotate sessions alone.
    session_secret: SecretStr | None = None
    session_hours: float = Field(12.0, gt=0, le=24 * 7)
    service_account: str = Field("automation", pattern=NAME_PATTERN)
    service_role: Role = "operator"


@dataclass(frozen=True)
class Operator:
    """The account making an admin request."""

    name: str
    role: Role
    service: bool = False  # the admin bearer token's service account
    # The digest of the password hash this account was authenticated with (`login`, `from_token`):
    # a token or session made from it ends with that password, whatever changed since.
    password_mark: str = field(default="", compare=False, repr=False)


class AccountError(ValueError):
    """A name, role or password that cannot make an account (the message names which)."""


def check_new_account(name: str, role: str, password: str) -> None:
    if not re.fullmatch(NAME_PATTERN, name):
        raise AccountError(f"name: {name!r} must be 2-64 characters of a-z, 0-9, '_', '.', '-', starting with a letter")
    if role not in ROLES:
        raise AccountError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password: at least {MIN_PASSWORD_CHARS} characters")


def derive_secret(config: ConsoleConfig, admin_token: str) -> str:
    if config.session_secret is not None:
        return config.session_secret.get_secret_value()
    return hmac.new(admin_token.encode(), b"recsys console sessions", hashlib.sha256).hexdigest()


def _password_mark(password_hash: str) -> str:
    """A short digest of the stored password hash that a token carries (never the hash itself)."""
    return hashlib.sha256(b"recsys operator token " + password_hash.encode()).hexdigest()[:24]


class OperatorAccounts:
    """Accounts, passwords and operator tokens over one OperatorStore."""

    def __init__(self, store: OperatorStore, config: ConsoleConfig, admin_token: str, clock: Callable[[], datetime]):
        self.store = store
        self.config = config
        self.clock = clock
        self._admin_token = admin_token
        self.secret = derive_secret(config, admin_token)
        self._hasher = PasswordHasher()
        self._tokens = URLSafeTimedSerializer(self.secret, salt="recsys-operator-token")
        self._dummy_hash = self._hasher.hash("not a password of anyone")  # unknown names cost a verify too

    # -- accounts ------------------------------------------------------------------------------
    def add(self, name: str, role: str, password: str) -> dict:
        check_new_account(name, role, password)
        if name == self.config.service_account:
            raise AccountError(f"name: {name!r} is the admin token's service account (console.service_account)")
        return self.store.add(name, role, self.hash_password(password), self.clock())

    def hash_password(self, password: str) -> str:
        return self._hasher.hash(password)

    def login(self, name: str, password: str) -> Operator | None:
        """The account when `password` is its password and it is not disabled; None otherwise."""
        row = self.store.get(name) if len(name) <= 64 else None
        try:
            self._hasher.verify(row["password_hash"] if row else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled_at"] is not None:
            return None
        if self._hasher.check_needs_rehash(row["password_hash"]):
            rehashed = self._hasher.hash(password)
            self.store.set_password(name, rehashed, self.clock(), revoke_sessions=False)
            return Operator(row["name"], row["role"], password_mark=_password_mark(rehashed))
        return Operator(row["name"], row["role"], password_mark=_password_mark(row["password_hash"]))

    def still_current(self, operator: Operator) -> bool:
        """Whether `operator` (as `login` authenticated it) is still enabled under the same password.
        A console session opened after the password was checked is checked again with this once it
        is stored: a reset (or a disable) that landed in between has revoked the sessions it found,
        and this finds the change, so a stolen password racing its own reset opens nothing."""
        row = self.store.get(operator.name)
        return (row is not None and row["disabled_at"] is None and bool(operator.password_mark)
                and hmac.compare_digest(operator.password_mark, _password_mark(row["password_hash"])))

    # -- tokens --------------------------------------------------------------------------------
    def issue_token(self, operator: Operator) -> str:
        """A signed token naming the account and the password it was authenticated with
        (`operator.password_mark`; the stored one for an Operator made otherwise): a password change
        (or a reset by `recsys operators password`) ends every token issued before it, as it ends
        console sessions, and one issued after a reset that landed during the login is born ended
        (the token never reads the password again: the reset's hash is not what was checked)."""
        mark = operator.password_mark
        if not mark:
            row = self.store.get(operator.name)
            mark = _password_mark(row["password_hash"] if row else "")
        return TOKEN_PREFIX + self._tokens.dumps([operator.name, mark])

    def from_token(self, token: str) -> Operator | None:
        """The (still enabled) account of an unexpired operator token."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 512:
            return None
        try:
            name = self._tokens.loads(token.removeprefix(TOKEN_PREFIX), max_age=self.config.session_hours * 3600)
        except BadSignature:  # includes SignatureExpired
            return None
        if not (isinstance(name, list) and len(name) == 2 and all(isinstance(part, str) for part in name)):
            return None  # a token of the older shape (the name alone) or no token of ours
        name, mark = name
        row = self.store.get(name)
        if row is None or row["disabled_at"] is not None:
            return None
        if not hmac.compare_digest(mark, _password_mark(row["password_hash"])):
            return None  # the password changed after the token was issued
        return Operator(row["name"], row["role"], password_mark=mark)

    def from_authorization(self, authorization: str | None) -> Operator | None:
        """The account behind `Authorization: Bearer ...`: the service account for the admin token,
        a named account for an operator token, None for anything else."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        if hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Operator(self.config.service_account, self.config.service_role, service=True)
        return self.from_token(token)
