"""`recsys operators add|list|disable|password`: named operator accounts (serving/operators.py).

Accounts go to the state database the servers read; each change is appended to the log. The
password is read from the terminal (asked twice) or, with --password-stdin, from one line of
standard input (for provisioning scripts); it is stored only as an argon2id hash."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

app = typer.Typer(help="Named operator accounts: add, list, disable, change a password.", no_args_is_help=True)


def _accounts():
    from pydantic import ValidationError

    from compliance.logstore import LogStore, LogStoreUnavailable
    from serving.config import Settings
    from serving.operators import OperatorAccounts
    from serving.state.db import make_engine
    from serving.state.operators import OperatorStore

    try:
        settings = Settings()
    except (ValidationError, ValueError) as exc:
        _fail(f"configuration: {' '.join(str(exc).split())[:300]}")
    try:
        logstore = LogStore(settings.logs, stream=f"operators-cli-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    except LogStoreUnavailable as exc:
        _fail(f"logs.dir: {exc}")
    store = OperatorStore(make_engine(settings.database_url))
    accounts = OperatorAccounts(store, settings.console, settings.admin_token.get_secret_value(), lambda: datetime.now(UTC))
    return accounts, logstore


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Account name: 2-64 of a-z, 0-9, _ . - (starts with a letter).")],
    role: Annotated[str, typer.Option(help="operator | approver | auditor (auditor: read-only).")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from one line of stdin.")] = False,
) -> None:
    """Add an account; it can log in to /console and POST /v1/admin/login at once."""
    from serving.operators import AccountError
    from serving.state.operators import OperatorExists

    accounts, logstore = _accounts()
    try:
        row = accounts.add(name, role, _password(password_stdin))
    except (AccountError, OperatorExists) as exc:
        logstore.close()
        _fail(str(exc))
    logstore.append("operators", {"action": "add", "name": row["name"], "role": row["role"], "by": "recsys operators"})
    logstore.close()
    typer.echo(f"added operator {row['name']} ({row['role']})")


@app.command("list")
def list_accounts() -> None:
    """Every account, its role, and whether it is disabled; then the admin token's service account."""
    accounts, logstore = _accounts()
    logstore.close()
    for row in accounts.store.list():
        state = f"disabled {row['disabled_at']:%Y-%m-%d}" if row["disabled_at"] else "enabled"
        typer.echo(f"{row['name']}\t{row['role']}\t{state}\tcreated {row['created_at']:%Y-%m-%d}")
    config = accounts.config
    typer.echo(f"{config.service_account}\t{config.service_role}\tservice account (the admin bearer token)")


@app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="The account to disable.")]) -> None:
    """Disable an account: its console sessions are revoked and its tokens stop working from the next request (kept for the record)."""
    accounts, logstore = _accounts()
    if not accounts.store.disable(name, datetime.now(UTC)):
        logstore.close()
        _fail(f"NAME: no enabled operator {name!r}")
    logstore.append("operators", {"action": "disable", "name": name, "by": "recsys operators"})
    logstore.close()
    typer.echo(f"disabled operator {name}")


@app.command("password")
def password(
    name: Annotated[str, typer.Argument(help="The account whose password changes.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from one line of stdin.")] = False,
) -> None:
    """Set a new password: the account's open console sessions end."""
    from serving.operators import MIN_PASSWORD_CHARS

    accounts, logstore = _accounts()
    new = _password(password_stdin)
    if len(new) < MIN_PASSWORD_CHARS:
        logstore.close()
        _fail(f"password: at least {MIN_PASSWORD_CHARS} characters")
    if not accounts.store.set_password(name, accounts.hash_password(new), datetime.now(UTC)):
        logstore.close()
        _fail(f"NAME: no operator {name!r}")
    logstore.append("operators", {"action": "password", "name": name, "by": "recsys operators"})
    logstore.close()
    typer.echo(f"password of {name} changed")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
