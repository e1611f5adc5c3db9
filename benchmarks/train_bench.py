"""Benchmark of training: quality of every model on the offline protocol over several seeds, and
the wall time of one `train` (both stages, evaluation, MLflow run, registration) per stage.

    python -m benchmarks.train_bench                        # movielens-100k, seeds 0 1 2
    python -m benchmarks.train_bench --seeds 0 --out benchmarks/results/train_bench.md

Quality runs go through `run_offline` (the pipeline without MLflow); the timed run uses a fresh
temporary MLflow store, so it includes creating the store, as a first `make serve` does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

COLUMNS = ("ndcg_at_10", "recall_at_10", "catalog_coverage_at_10", "genres_at_10")
MODELS = ("MostPopular", "ItemKNN", "EASE", "ALS", "two-stage")


def quality(dataset_name: str, seeds: list[int]) -> tuple[dict[int, dict], dict[int, dict]]:
    """Per seed: the test table of every model and the validation figures of the ranker."""
    from recsys.datasets import load
    from training.config import TrainingConfig
    from training.pipeline import run_offline

    data = load(dataset_name)
    tables, validation = {}, {}
    for seed in seeds:
        config = TrainingConfig(seed=seed, baselines=("popular", "itemknn", "ease", "als"))
        with tempfile.TemporaryDirectory() as tmp:
            result = run_offline(data, config, Path(tmp))
        tables[seed] = result.metrics | {"_candidate_recall": result.candidate_recall}
        validation[seed] = result.validation
    return tables, validation


def timed_train(dataset_name: str) -> dict[str, float]:
    """Seconds per stage of one `train` into a temporary MLflow store (imports included in total)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        os.environ["RECSYS_MLFLOW_ARTIFACTS_DIR"] = str(Path(tmp) / "artifacts")
        os.environ["RECSYS_VAR_DIR"] = str(Path(tmp) / "var")
        from recsys.config import core_settings

        core_settings.cache_clear()
        imported = time.perf_counter()
        from training.pipeline import train

        imports = time.perf_counter() - imported
        result = train(dataset_name, progress=False)
        timings = {"imports": imports, **result.timings_s}
        timings["wall (imports + train)"] = time.perf_counter() - started
    core_settings.cache_clear()
    return timings


def report(tables: dict[int, dict], validation: dict[int, dict], timings: dict[str, float], dataset: str) -> str:
    lines = [f"# Training benchmark: {dataset}", "", "## Test split, per seed", ""]
    lines += ["| seed | model | " + " | ".join(COLUMNS) + " |", "| --- | --- |" + " ---: |" * len(COLUMNS)]
    for seed, table in tables.items():
        for model in MODELS:
            row = table[model]
            lines.append(f"| {seed} | {model} | " + " | ".join(f"{row[c]:.4f}" for c in COLUMNS) + " |")
    lines += ["", "## Mean over seeds", "", "| model | " + " | ".join(COLUMNS) + " |", "| --- |" + " ---: |" * len(COLUMNS)]
    for model in MODELS:
        means = [np.mean([t[model][c] for t in tables.values()]) for c in COLUMNS]
        lines.append(f"| {model} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    recall = np.mean([t["_candidate_recall"] for t in tables.values()])
    lines += ["", f"Retrieval recall of the top-N candidates (test, mean): {recall:.4f}", "",
              "## Validation split (what the ranker was selected on), per seed", "",
              "| seed | ranker ndcg@10 | retrieval-order ndcg@10 | ranker recall@10 | retrieval-order recall@10 | epochs |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for seed, values in validation.items():
        lines.append(f"| {seed} | {values['ranker_ndcg_at_10']:.4f} | {values['retrieval_ndcg_at_10']:.4f} | "
                     f"{values['ranker_recall_at_10']:.4f} | {values['retrieval_recall_at_10']:.4f} | {values['ranker_epochs']:.0f} |")
    lines += ["", "## `train` wall time (seconds, 2-core machine, fresh MLflow store)", "", "| stage | s |", "| --- | ---: |"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in timings.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the training config's seeds")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument("--skip-timing", action="store_true", help="quality table only")
    args = parser.parse_args()
    timings = {} if args.skip_timing else timed_train(args.dataset)  # first: its imports are timed too
    from training.config import TrainingConfig

    tables, validation = quality(args.dataset, args.seeds or list(TrainingConfig().seeds))
    text = report(tables, validation, timings, args.dataset)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
