"""`recsys audit` (auditor/cli.py): bad flags and unreachable servers exit 2 with one line naming the
problem; the table and the failures print the server's text verbatim."""

from __future__ import annotations

import json

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from auditor.articles.lists import check_dedup, check_explanations
from auditor.cli import audit_command, print_failures, render_table
from auditor.config import AuditConfig, AuditError
from auditor.report import AuditReport
from auditor.run import run_audit
from tests.auditor.builders import item, page, rotating, session
from tests.conftest import free_port


def test_run_audit_refuses_an_unreachable_server():
    with pytest.raises(AuditError, match="cannot reach"):
        run_audit(f"http://127.0.0.1:{free_port()}", AuditConfig(timeout_s=2.0))


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("audit")(audit_command)
    app.command("noop")(lambda: None)
    return app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://example"], "--url"),
        (["--url", "http://127.0.0.1:{port}"], "cannot reach"),
        (["--url", "http://127.0.0.1:{port}", "--out", "/no/such/dir/report.json"], "--out"),
        (["--url", "http://127.0.0.1:{port}", "--user-ids", "a b"], "--user-ids"),
    ],
)
def test_cli_exits_2_with_a_message_naming_the_problem(args, message):
    port = free_port()
    result = CliRunner().invoke(_cli(), ["audit", *[a.format(port=port) for a in args]])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_cli_help_describes_the_audit():
    result = CliRunner().invoke(_cli(), ["audit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "over HTTP only" in result.output and "--user-ids" in result.output


def test_table_and_failures_render_text_with_brackets_verbatim():
    failing = check_dedup([session(page(rotating(0, 3) + [item(1)]))])
    failing.details.append("item ['x'] [red]not markup[/red]")
    passing = check_explanations([page(rotating(0, 2))])
    report = AuditReport("http://127.0.0.1:1", "t0", "t1", {}, {}, {}, ["1"], [failing, passing], {"checks": 2})
    console = Console(record=True, width=200)
    console.print(render_table(report))
    print_failures(console, report, per_check=5)
    text = console.export_text()
    assert "FAIL (1)" in text and "pass" in text and "[red]not markup[/red]" in text
    assert not report.passed and "admin_token" not in json.dumps(report.to_dict())
