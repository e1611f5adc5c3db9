"""The `recsys` command: data, training, serving, logs, compliance and benchmark commands.

This module is the composition root: the one place in recsys/ that imports the other packages,
and only lazily, inside the commands, so `recsys data ...` does not load torch or FastAPI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="A two-stage recommender with the algorithmic-recommendation provisions built in.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error naming the bad input and exit (no traceback)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name: movielens-100k.")],
    source: Annotated[
        str, typer.Option(help="Where from: recbole (the RecBole 1.2.1 wheel, via pip), grouplens (internet), or a local folder.")
    ] = "recbole",
    force: Annotated[bool, typer.Option(help="Fetch and rebuild even if cached.")] = False,
) -> None:
    """Fetch a dataset, derive its labels and cache it as Parquet under data/processed/NAME."""
    from recsys.datasets import fetch
    from recsys.schema import SchemaError

    try:
        path = fetch(name, source=source, force=force)
    except SchemaError as exc:
        fail(str(exc))
    from recsys.datasets.labels import age_band_report, format_age_band_report
    from recsys.schema import Dataset

    dataset = Dataset.load(path, name=name)
    typer.echo(f"{dataset.summary()} -> {path}")
    typer.echo(format_age_band_report(age_band_report(dataset.items)))  # what each minors' band may see


@data_app.command("synth")
def data_synth(
    users: Annotated[int, typer.Option(help="Number of users.", min=1)] = 10_000,
    items: Annotated[int, typer.Option(help="Number of items.", min=1)] = 100_000,
    out: Annotated[Path, typer.Option(help="Output folder (written as the schema's three Parquet files).")] = Path(
        "data/synthetic/default"
    ),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    interactions_per_user: Annotated[float, typer.Option(help="Mean interactions per user.", min=1)] = 20.0,
) -> None:
    """Generate a seeded synthetic catalog (categories, popularity skew, minors, duplicates, flagged and AI-generated items)."""
    import time

    from recsys.datasets.synthetic import SyntheticConfig, generate

    try:
        config = SyntheticConfig(n_users=users, n_items=items, seed=seed, interactions_per_user=interactions_per_user)
    except ValueError as exc:
        fail(str(exc))
    started = time.perf_counter()
    dataset = generate(config)
    dataset.save(out)
    typer.echo(f"{dataset.summary()} in {time.perf_counter() - started:.1f}s -> {out}")


def _mount_package_commands() -> None:
    """Attach the commands of the other packages; each lives next to the code it drives."""
    from compliance.logstore.cli import app as logs_app
    from serving.cli import serve_command

    app.command("serve")(serve_command)
    from benchmarks.cli import app as bench_app
    from auditor.cli import audit_command
    from training.cli import evaluate_command, train_command

    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    from app.filing_cli import filing_command

    app.command("filing")(filing_command)
    app.add_typer(bench_app, name="bench", help="Latency, quality and compliance benchmarks.")
    from serving.admin_cli import app as features_app

    app.command("audit")(audit_command)

    app.add_typer(features_app, name="features")
    from serving.trending_cli import app as trending_app

    app.add_typer(trending_app, name="trending", help="The hot list: recompute logged snapshots from the stored events.")
    from serving.operators_cli import app as operators_app

    app.add_typer(operators_app, name="operators")
    from serving.state.cli import app as db_app

    app.add_typer(db_app, name="db", help="The state database's schema: upgrade (Alembic migrations), current revision.")
    from app.cluster.cli import app as cluster_app

    app.add_typer(cluster_app, name="cluster", help="The deployment topology on one machine: PostgreSQL, MLflow, replicas behind nginx.")
    app.add_typer(logs_app, name="logs", help="Verify, purge, export, compact and query the recommendation log (Art. 28 (draft 24), Art. 29 (draft 25)).")


def main() -> None:
    _mount_package_commands()
    app()


if __name__ == "__main__":
    sys.exit(main())
