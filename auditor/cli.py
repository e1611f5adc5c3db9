"""`recsys audit`: the black-box compliance audit (Art. 9, Art. 11, Art. 12, Art. 17 (draft 15), Art. 18 (draft 16), Art. 22 (draft 26), Art. 26 (draft 22), Art. 28 (draft 24)) of a running
server, printed as a pass/fail table per article, optionally written as a JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from auditor.config import AuditConfig, AuditError
from auditor.report import AuditReport
from auditor.run import run_audit

FAILURES_SHOWN = 3  # example failures printed per failed check; the JSON report has up to ten


def audit_command(
    url: Annotated[str, typer.Option(help="Base URL of the running server, e.g. http://127.0.0.1:8000.")],
    admin_token: Annotated[
        str, typer.Option(envvar="RECSYS_ADMIN_TOKEN", show_default=False,
                          help="Admin bearer token (complaint handling, log verification); default: the dev token.")
    ] = "dev-admin-token",
    users: Annotated[
        int, typer.Option(help="Known (personalized) users to find among ids 1..50 and use.", min=1, max=50)
    ] = 4,
    pages: Annotated[int, typer.Option(help="Pages per session, chained by session_id.", min=1, max=20)] = 3,
    lists: Annotated[
        int, typer.Option(help="Lists requested by the de-duplication/dispersal crawl.", min=1, max=1000)
    ] = 40,
    out: Annotated[Path | None, typer.Option(help="Write the full JSON report here.", dir_okay=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed for assigning users to trials.")] = 7,
    user_ids: Annotated[
        str | None,
        typer.Option("--user-ids", help="Comma-separated known user ids to use instead of discovering them."),
    ] = None,
) -> None:
    """Audit a running recommendation server over HTTP only, article by article.

    Art. 12 de-duplication, dispersal, explanations; Art. 11 front screen; Art. 17 (draft 15) switch, tags, explanations.

    Art. 18 (draft 16) minors mode; Art. 26 (draft 22) filing number; Art. 28 (draft 24) log; Art. 22 (draft 26) complaints; Art. 9 AI-generated label.

    Every setting the audit changes is restored. Exit code 1 if a check fails, 2 if the server cannot be audited.
    """
    console = Console()
    if out is not None and not out.parent.is_dir():
        _fail(console, f"--out: directory {out.parent} does not exist")
    ids = tuple(u.strip() for u in (user_ids or "").split(",") if u.strip())
    try:
        config = AuditConfig(users=users, pages=pages, lists=lists, seed=seed, user_ids=ids, admin_token=admin_token)
        report = run_audit(url, config)
    except AuditError as exc:
        _fail(console, str(exc))
    console.print(render_table(report))
    print_failures(console, report)
    totals = report.totals
    console.print(
        f"{totals['requests']} requests, {totals['lists_served']} lists, {totals['items_served']} items; "
        f"model {report.server.get('model_version')}, policy {report.server.get('policy_hash')}; "
        f"users {', '.join(report.users) or 'none'}",
        markup=False,
    )
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if out is not None:
        try:
            text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str)
            out.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            _fail(console, f"--out: cannot write {out}: {exc.strerror}")
        console.print(f"report written to {out}")
    failed = f"[red]FAILED[/] ({totals['checks_failed']} of {totals['checks']} checks)"
    verdict = "[green]PASSED[/]" if report.passed else failed
    console.print(f"audit {verdict}")
    if not report.passed:
        raise typer.Exit(1)


def render_table(report: AuditReport) -> Table:
    """One row per check: article, check, verdict (with the failure count) and its counts."""
    table = Table(title=f"Compliance audit of {report.base_url}")
    for column in ("Article", "Check", "Result", "Counts"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        counts = "\n".join(f"{k} {v}" for k, v in check.counts.items() if k != "failures")
        verdict = "[green]pass[/]" if check.passed else f"[red]FAIL[/] ({check.counts.get('failures', 0)})"
        table.add_row(check.article, check.name, verdict, Text(counts))
    return table


def print_failures(console: Console, report: AuditReport, per_check: int = FAILURES_SHOWN) -> None:
    """The first few example failures of each failed check (all ten are in the JSON report)."""
    for check in report.checks:
        if check.passed:
            continue
        console.print(f"[red]{escape(check.article)} {escape(check.name)}[/]:")
        for detail in check.details[:per_check] or ["(the check could not run)"]:
            console.print(f"  - {detail}", markup=False, highlight=False)


def _fail(console: Console, message: str) -> NoReturn:
    console.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(2)
