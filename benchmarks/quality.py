"""Quality benchmark: the offline protocol of DESIGN.md (MovieLens-100K by default) over several
seeds, for MostPopular, ItemKNN, EASE, ALS alone, the two-stage model, and the two-stage model
followed by the full policy pipeline (de-duplication ► dispersal ► front-screen mainstream slots).

Models are trained by `training.pipeline.run_offline` (the code `recsys train` runs) and scored by
`recsys.evaluation` (the protocol's metrics, not re-implemented here) under both exclusion rules:
`unseen_*` (served reality, primary: every item the user rated at any value before the test part
excluded) and the unprefixed names (published protocol: train positives excluded). Beyond
accuracy: catalog coverage, genres in the top 10, dispersal and content-duplicate violations per
list, and the "price of compliance": NDCG@10 of the policy pipeline minus that of the two-stage
model. Results go to quality.json and to the MLflow experiment "benchmarks".
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.latency import BenchmarkError, say

EXPERIMENT = "benchmarks"
DEFAULT_DATASET = "movielens-100k"
MODELS = ("MostPopular", "ItemKNN", "EASE", "ALS", "two-stage", "two-stage + policy")
BASELINE_KEYS = {"MostPopular": "popular", "ItemKNN": "itemknn", "EASE": "ease"}


@dataclass(frozen=True)
class QualityConfig:
    dataset: str = DEFAULT_DATASET  # a dataset name or a dataset folder
    seeds: tuple[int, ...] = (0, 1, 2)
    k: int = 10
    surface: str = "home"  # the policy pipeline's rules are those of page 0 of this surface
    mlflow: bool = True

    def __post_init__(self) -> None:
        if not self.seeds:
            raise BenchmarkError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
        if len(set(self.seeds)) != len(self.seeds):
            raise BenchmarkError(f"--seeds: repeated seed in {list(self.seeds)}")
        if not 1 <= self.k <= 100:
            raise BenchmarkError(f"k: must be in 1..100, got {self.k}")


def evaluate_seed(dataset, seed: int, config: QualityConfig, training_config=None) -> dict:
    """Train with `seed` through the real pipeline, then score every model's lists with the protocol."""
    from compliance.policy import PolicyConfig
    from recsys.bundle import ModelBundle
    from recsys.evaluation import EXCLUDE_POSITIVES, EXCLUDE_SEEN, RULE_PREFIX, RULES, scorer_top_k, summarize_rules
    from training.config import TrainingConfig
    from training.pipeline import FactorScores, baseline_models, run_offline
    from training.review import OfflineServing, list_violations, one_thread

    base = training_config or TrainingConfig()
    cfg = base.model_copy(update={"seed": seed}).effective()
    policy = PolicyConfig()
    workdir = Path(tempfile.mkdtemp(prefix=f"quality-s{seed}-"))
    timings = {}
    try:
        started = time.perf_counter()
        offline = run_offline(dataset, cfg, workdir, baselines=())
        timings["train_two_stage_s"] = round(time.perf_counter() - started, 2)
        bundle = ModelBundle.load(offline.bundle_dir, serving=False)
        split = offline.split
        users = split.test_users()
        train_matrix = split.train.matrix()
        exclusion = {rule: split.exclusion(rule) for rule in RULES}
        lists: dict[str, dict[str, np.ndarray]] = {label: {} for label in MODELS}  # label -> rule -> lists
        for label, key in BASELINE_KEYS.items():
            started = time.perf_counter()
            model = baseline_models((key,), cfg)[key].fit(train_matrix)
            for rule in RULES:
                lists[label][rule] = scorer_top_k(model, exclusion[rule])(users, config.k)
            timings[f"{key}_s"] = round(time.perf_counter() - started, 2)
        als = FactorScores(bundle.user_factors, bundle.item_factors)
        for rule in RULES:
            lists["ALS"][rule] = scorer_top_k(als, exclusion[rule])(users, config.k)
            lists["two-stage"][rule] = bundle.recommend(users, config.k, exclude_seen=rule == EXCLUDE_SEEN)
        known = split.known()
        histories = [split.train.of(int(u)) for u in users]
        started = time.perf_counter()
        with one_thread():  # per-list work, as serving runs it
            path = OfflineServing(bundle, policy, surface=config.surface)
            for rule in RULES:
                seen = [known.of(int(u)) for u in users] if rule == EXCLUDE_SEEN else None
                lists["two-stage + policy"][rule] = path.lists(histories, config.k, seen=seen)
        timings["policy_pipeline_s"] = round(time.perf_counter() - started, 2)
        table = {}
        for label in MODELS:
            row = summarize_rules(lists[label], users, split, bundle.item_category, config.k)
            for rule in RULES:
                violations = list_violations(lists[label][rule], bundle.item_category, bundle.content_code, bundle.flagged,
                                             policy.dispersal.window, policy.dispersal.max_per_window)
                row.update({RULE_PREFIX[rule] + name: value for name, value in violations.items()})
            table[label] = row
        reference = offline.metrics.get("two-stage", {})
        return {"seed": seed, "metrics": table, "pipeline_two_stage": reference, "timings_s": timings,
                "users_evaluated": int(len(users)), "items": int(split.n_items),
                "candidate_recall": offline.candidate_recall, "unseen_candidate_recall": offline.unseen_candidate_recall,
                "rules": {rule: RULE_PREFIX[rule] or "(no prefix)" for rule in (EXCLUDE_SEEN, EXCLUDE_POSITIVES)}}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def aggregate(per_seed: list[dict], k: int) -> dict:
    """Mean, standard deviation, min and max over seeds of every metric of every model."""
    out: dict[str, dict] = {}
    for label in MODELS:
        names = per_seed[0]["metrics"][label].keys()
        out[label] = {}
        for name in names:
            values = np.asarray([s["metrics"][label][name] for s in per_seed], dtype=float)
            out[label][name] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                                "min": float(np.min(values)), "max": float(np.max(values))}
    def spread(values: np.ndarray) -> dict[str, float]:
        return {"mean": float(values.mean()), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}

    price: dict = {}
    for prefix in ("", "unseen_"):  # the published protocol's names, then the served reality's
        ndcg = f"{prefix}ndcg_at_{k}"
        deltas = np.asarray([s["metrics"]["two-stage + policy"][ndcg] - s["metrics"]["two-stage"][ndcg] for s in per_seed])
        relative = np.asarray([d / s["metrics"]["two-stage"][ndcg] for d, s in zip(deltas, per_seed)])
        price[f"{prefix}ndcg_delta"] = spread(deltas)
        price[f"{prefix}ndcg_relative"] = spread(relative)
    price["explanation"] = (f"NDCG@{k} of the two-stage model followed by the policy pipeline minus that of the two-stage "
                            "model (unseen_*: every seen item excluded; otherwise train positives excluded)")
    return {"models": out, "price_of_compliance": price}


def log_to_mlflow(result: dict, artifact: Path) -> str | None:
    """One run in the "benchmarks" experiment: params, mean/std per model and metric, the JSON."""
    import mlflow

    from recsys.config import core_settings
    from training.registry import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        location = (core_settings().mlflow_artifacts_dir / EXPERIMENT).resolve()
        location.mkdir(parents=True, exist_ok=True)
        experiment_id = mlflow.create_experiment(EXPERIMENT, artifact_location=location.as_uri())
    else:
        experiment_id = experiment.experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"quality-{result['dataset']['name']}") as run:
        mlflow.set_tags({"benchmark": "quality", "dataset": result["dataset"]["name"]})
        mlflow.log_params({"dataset": result["dataset"]["name"], "seeds": ",".join(map(str, result["config"]["seeds"])),
                           "k": result["config"]["k"], "surface": result["config"]["surface"]})
        metrics = {}
        for label, values in result["summary"]["models"].items():
            slug = label.replace(" + ", "_plus_").replace("-", "_").replace(" ", "_").lower()
            for name, stats in values.items():
                if name == "users":
                    continue
                metrics[f"{slug}.{name}.mean"] = stats["mean"]
                metrics[f"{slug}.{name}.std"] = stats["std"]
        price = result["summary"]["price_of_compliance"]
        for prefix in ("", "unseen_"):
            metrics[f"price_of_compliance.{prefix}ndcg_delta.mean"] = price[f"{prefix}ndcg_delta"]["mean"]
            metrics[f"price_of_compliance.{prefix}ndcg_relative.mean"] = price[f"{prefix}ndcg_relative"]["mean"]
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(artifact))
        return run.info.run_id


def run(config: QualityConfig, out_dir: Path, machine: dict | None = None, training_config=None) -> dict:
    """Every seed, the aggregate and the MLflow run; writes out_dir/quality.json and returns it."""
    from recsys.datasets import load
    from recsys.schema import SchemaError

    out_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    try:
        dataset = load(config.dataset)
    except SchemaError as exc:
        raise BenchmarkError(f"--dataset: {exc}") from None
    per_seed = []
    for seed in config.seeds:
        say(f"quality: seed {seed} on {dataset.name}")
        per_seed.append(evaluate_seed(dataset, seed, config, training_config))
        ndcg = per_seed[-1]["metrics"]
        say("quality (NDCG@k unseen / positives-only): "
            + ", ".join(f"{m} {ndcg[m][f'unseen_ndcg_at_{config.k}']:.4f} / {ndcg[m][f'ndcg_at_{config.k}']:.4f}" for m in MODELS))
    result = {
        "benchmark": "quality",
        "started_at": started_at,
        "config": asdict(config),
        "training_config": (training_config.model_dump(mode="json") if training_config is not None else "defaults"),
        "dataset": {"name": dataset.name, "interactions": dataset.interactions.height, "items": dataset.items.height,
                    "users": dataset.users.height},
        "protocol": "DESIGN.md: positives rating >= 4; per user the last ceil(0.2 n) positives by time to test; "
                    "full ranking over all items; unseen_* metrics exclude every item the user rated (any value) "
                    "before the first test positive (served reality), the unprefixed ones only the train positives "
                    "(published protocol); metrics over users with a test item",
        "machine": machine,
        "per_seed": per_seed,
        "summary": aggregate(per_seed, config.k),
    }
    result["duration_s"] = round(time.perf_counter() - started, 1)
    path = out_dir / "quality.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    if config.mlflow:
        result["mlflow_run_id"] = log_to_mlflow(result, path)
        path.write_text(json.dumps(result, indent=2, default=str))
    return result
