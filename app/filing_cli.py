"""`recsys filing --out DIR [--since PREVIOUS] [--audit AUDIT.json]`: the Art. 23 (draft 19), Art. 24 (draft 20) filing draft,
generated from the registered model, its MLflow run, the policy config and the latest audit."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer


def filing_command(
    out: Annotated[Path, typer.Option(help="Folder for filing.json, filing.md, filing.html (and change-record.json).")],
    since: Annotated[Path | None, typer.Option(help="A previous filing folder or filing.json: write a change record with its 5-working-day deadline.")] = None,
    audit: Annotated[Path | None, typer.Option(help="JSON report of `recsys audit --out` for the self-assessment (default: the model's periodic review from training).")] = None,
    model_uri: Annotated[str | None, typer.Option(help="Model to file (default: the registered model's serving alias).")] = None,
) -> None:
    """Generate the algorithm filing draft (provider, service form, field, algorithm type, self-assessment, public text)."""
    from compliance.filing import FilingError, read_filing, write_filing
    from recsys.config import core_settings
    from serving.config import Settings
    from recsys.registry import load_bundle
    from serving.web.filing import filing_for_bundle

    settings = Settings()
    uri = model_uri or f"models:/{core_settings().model_name}@{core_settings().model_alias}"
    try:
        bundle, version = load_bundle(uri)
    except Exception as exc:
        _fail(f"--model-uri: cannot load {uri}: {' '.join(str(exc).split())[:200]}")
    previous = None
    if since is not None:
        path = since / "filing.json" if since.is_dir() else since
        try:
            previous = read_filing(path)
        except FilingError as exc:
            _fail(f"--since: {exc}")
    audit_report = None
    if audit is not None:
        try:
            audit_report = json.loads(audit.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            _fail(f"--audit: cannot read {audit}: {exc}")
    try:
        filing = filing_for_bundle(settings, bundle, version, audit_report, date.today())
        written = write_filing(out, filing, previous=previous)
    except FilingError as exc:
        _fail(str(exc))
    for kind, path in written.items():
        typer.echo(f"{kind}: {path}")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
