"""`recsys train` and `recsys evaluate`: plain typer-compatible functions the root CLI mounts.

Errors are one line naming the flag (or environment variable) at fault, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DATASET = "movielens-100k"


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400]


def train_command(
    dataset: Annotated[str, typer.Option(help="Dataset name (movielens-100k) or a dataset folder (the schema's Parquet files).")] = DEFAULT_DATASET,
    full: Annotated[bool, typer.Option(help="Serve a model refitted on all positives (metrics stay those of the train-split model).")] = False,
    force: Annotated[bool, typer.Option(help="Train even when --reuse would find a matching registered model.")] = False,
    reuse: Annotated[bool, typer.Option(help="Return the aliased model when it was trained on the same data with the same config (and bundle format).")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of ALS, the index and the ranker (overrides the config file).")] = None,
    config: Annotated[Path | None, typer.Option(help="Training config file (JSON or TOML); unset fields keep their defaults.")] = None,
    alias: Annotated[bool, typer.Option(help="Point the serving alias at the new version (--no-alias: register only).")] = True,
    policy: Annotated[Path | None, typer.Option(help="List policy file (JSON or TOML, as served) the periodic review applies; default: the built-in policy.")] = None,
    progress: Annotated[bool, typer.Option(help="Show stage progress and timings.")] = True,
    engine: Annotated[str, typer.Option(help="Where data is read and models are fitted: local (this process) or ray "
                                             "(Ray Data, an ALS task, DDP ranker training; needs the ray extra).")] = "local",
    address: Annotated[str | None, typer.Option(help="--engine ray: the Ray cluster to use (e.g. ray://HOST:10001, HOST:6379, "
                                                     "auto); default: a private local instance.")] = None,
    workers: Annotated[int, typer.Option(help="--engine ray: DDP replicas training the ranker.", min=1)] = 2,
) -> None:
    """Train retrieval (ALS + Faiss) and the ranker, evaluate and review them (Art. 8), log one MLflow run and
    register a model version; the serving alias moves to it only when the review passes (else exit code 3)."""
    from compliance.policy import PolicyConfig
    from recsys.schema import SchemaError
    from training.config import ConfigError, load_config
    from training.engine import ENGINES, make_engine

    if engine not in ENGINES:
        _fail(f"--engine: unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine != "ray" and (address is not None or workers != 2):
        _fail("--address and --workers apply to --engine ray only")

    try:
        training_config = load_config(config, seed=seed)
    except ConfigError as exc:
        _fail(str(exc))
    policy_config = None
    if policy is not None:
        try:
            policy_config = PolicyConfig.from_file(policy)
        except ValueError as exc:
            _fail(f"--policy: {_one_line(exc)}")
    import mlflow

    from training.pipeline import train

    runner = make_engine(engine, address=address, workers=workers) if engine == "ray" else make_engine(engine)
    try:  # the engine reads the dataset too (Ray Data on --engine ray)
        result = train(dataset, training_config, full=full, set_alias=alias, reuse=reuse and not force, progress=progress,
                       source=dataset, policy=policy_config, engine=runner)
    except SchemaError as exc:  # only reading the dataset raises it
        _fail(f"--dataset: {_one_line(exc)}")
    except mlflow.exceptions.MlflowException as exc:
        _fail(f"MLFLOW_TRACKING_URI: {_one_line(getattr(exc, 'message', exc))}")
    except ValueError as exc:  # EngineError among them: Ray missing, unreachable, a ranker it cannot train
        _fail(_one_line(exc))
    from rich.console import Console

    console = Console()
    if result.reused:
        console.print(f"reused registered model version {result.model_version} (same data and config; --force retrains)")
    console.print(f"MLflow run: {result.run_id}" + ("" if result.reused else f" (engine: {result.engine})"))
    console.print(f"registered model version: {result.model_version}" + (" (alias set)" if result.alias_set else " (alias not set)"))
    console.print(metrics_table(result.metrics, f"{result.dataset}: test split"))
    if result.review is not None:
        console.print(review_table(result.review))
    if result.timings_s:
        console.print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings_s.items()))
    if result.review is not None and not result.review["passed"]:
        failed = ", ".join(c["name"] for c in result.review["checks"] if not c["passed"])
        _fail(f"periodic review (Art. 8) failed on {failed}: version {result.model_version} is registered without the "
              f"serving alias (thresholds: the review section of --config)", code=3)


def evaluate_command(
    model_uri: Annotated[str | None, typer.Option(help="MLflow model URI (default: models:/<name>@<alias>).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name or folder (default: the one the model was trained on).")] = None,
    log: Annotated[bool, typer.Option(help="Log the table as an MLflow run.")] = True,
) -> None:
    """Evaluate MostPopular, ALS alone and the two-stage model on the dataset's test split (the offline protocol)."""
    from recsys.bundle import BundleError
    from recsys.schema import SchemaError
    from recsys.registry import RegistryError, load_bundle

    try:
        bundle, version = load_bundle(model_uri)
    except (RegistryError, BundleError) as exc:
        _fail(f"--model-uri: {_one_line(exc)}")
    manifest_dataset = bundle.manifest.get("dataset", {})
    source = dataset or manifest_dataset.get("source")
    if not source:
        _fail("--dataset: the model does not record where its data came from; name the dataset or folder")
    from recsys.datasets import load

    try:
        data = load(source)
    except SchemaError as exc:
        _fail(f"--dataset: {_one_line(exc)}")
    from training.pipeline import EvaluationMismatch, evaluate_registered

    try:
        table = evaluate_registered(bundle, data)
    except EvaluationMismatch as exc:
        _fail(str(exc))
    from rich.console import Console

    console = Console()
    console.print(metrics_table(table, f"model version {version} on {data.name}: test split"))
    if log:
        from training.pipeline import log_evaluation

        run_id = log_evaluation(table, model_uri or "", str(version), data.name)
        console.print(f"MLflow run: {run_id}")


def review_table(review: dict):
    from rich.table import Table

    out = Table(title=f"periodic review (Art. 8): {'passed' if review['passed'] else 'FAILED'}")
    for column, justify in (("check", "left"), ("value", "right"), ("threshold", "right"), ("result", "left")):
        out.add_column(column, justify=justify)
    for check in review["checks"]:
        value = "missing" if check["value"] is None else f"{check['value']:.4f}"
        out.add_row(check["name"], value, f"{check['threshold']:g}", "pass" if check["passed"] else "FAIL")
    return out


def metrics_table(table: dict[str, dict[str, float]], title: str):
    """The test table: the served-reality rule first (unseen_*: every item the user rated, at any
    value, before the test part excluded), then the published protocol's (train positives excluded)."""
    from rich.table import Table

    columns = {"unseen_ndcg_at_10": "ndcg@10", "unseen_recall_at_10": "recall@10", "ndcg_at_10": "peer ndcg",
               "recall_at_10": "peer recall", "unseen_catalog_coverage_at_10": "coverage"}
    out = Table(title=title, caption="every item the user rated (any value) excluded, as served; "
                                     "peer: only train positives excluded (published protocol)")
    out.add_column("model")
    for header in columns.values():
        out.add_column(header, justify="right")
    for label, row in table.items():
        out.add_row(label, *(f"{row[c]:.4f}" if c in row else "-" for c in columns))
    return out
