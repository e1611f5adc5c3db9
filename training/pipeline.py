"""The training pipeline: split ► ranker on a validation split ► retrieval (ALS, and the
sequential source unless switched off) ► indexes ► bundle ► evaluate ► periodic review (Art. 8) ► one MLflow run with a registered model version, given the
serving alias only when the review passed.

The ranker is trained on retrieval candidates of a validation split carved from train exactly
like test (ALS and the sequence model fitted on the inner part, both sources' candidates merged
and labelled with the held-out positives); the final model refits both on all train positives
and keeps that ranker. Candidates never hold an
item the user has rated (any rating) before the held-out part, in training as in serving; ALS and
the labels use positives only. Evaluation goes through the written bundle, the same code path
serving uses, under both exclusion rules of `recsys.evaluation` (the served reality `unseen_*`,
and the published protocol's positives-only names). `full=True` then refits retrieval on every
positive for the served bundle (the logged metrics stay those of the honest train-split model).

Where the data is read and the two models are fitted is the `engine`'s business
(`training.engine`: in this process, or on a Ray cluster); the pipeline is the same for each.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from compliance.policy import PolicyConfig, config_hash as policy_hash
from recsys.bundle import FORMAT_VERSION, BundleParts, ModelBundle, write_bundle, write_manifest
from recsys.columns import popularity_orders
from recsys.config import core_settings
from recsys.evaluation import (
    EXCLUDE_POSITIVES,
    EXCLUDE_SEEN,
    RULE_PREFIX,
    Histories,
    Split,
    candidate_recall,
    evaluate_scorer,
    interaction_histories,
    positive_histories,
    protocol_split,
    summarize_rules,
    validation_split,
)
from recsys.ranking.features import FEATURE_NAMES, ItemStats, encode_categories, item_stats
from recsys.ranking.importance import permutation_importance
from recsys.ranking.model import Ranker, make_ranker
from recsys.ranking.train import list_metrics, ranking_lists, split_lists
from recsys.retrieval import Recommender, model_class
from recsys.retrieval.als import ALS
from recsys.retrieval.baselines import MostPopular
from recsys.retrieval.index import build_index
from recsys.retrieval.sequential import SequentialSource, fit_sequential
from recsys.schema import Dataset
from training.config import TrainingConfig
from training.engine import Engine, LocalEngine
from training.review import ReviewReport, run_review

MODEL_LABELS = {"popular": "MostPopular", "itemknn": "ItemKNN", "ease": "EASE", "als": "ALS", "two_stage": "two-stage"}
PIP_PACKAGES = ("mlflow", "torch", "faiss-cpu", "implicit", "numpy", "scipy", "pandas", "polars", "pyarrow", "pydantic")


# -- results and stage timing -------------------------------------------------------------------


@dataclass
class TrainResult:
    """What one `train` call produced (or reused)."""

    run_id: str | None
    model_version: str | None
    model_uri: str | None
    metrics: dict[str, dict[str, float]]  # model label -> metric -> value (test split; unseen_* and peer names)
    validation: dict[str, float] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    reused: bool = False
    dataset: str = ""
    config_hash: str = ""
    alias_set: bool = False
    review: dict[str, Any] | None = None  # the periodic review (`ReviewReport.to_dict()`); None when reused
    engine: str = "local"  # the engine that read the data and fitted the models (`training.engine`)


class Stages:
    """Times named stages, reports them (rich status line) and hands each to an optional sink."""

    def __init__(self, progress: bool, sink=None):
        self.progress = progress
        self.sink = sink
        self.timings: dict[str, float] = {}
        self._console = None
        if progress:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        if self._console is not None:
            with self._console.status(f"[bold]{name}[/bold] ..."):
                yield
        else:
            yield
        seconds = time.perf_counter() - started
        self.timings[name] = seconds
        if self._console is not None:
            self._console.print(f"  {name:<22} {seconds:6.2f} s")
        if self.sink is not None:
            self.sink(name, seconds, len(self.timings))


# -- the offline part (no MLflow) ---------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """Item metadata the features need, encoded once per dataset."""

    codes: np.ndarray
    n_categories: int
    primary: np.ndarray
    release_year: np.ndarray
    mainstream: np.ndarray | None = None  # bool per item: the editorial pool (None: the dataset names none)

    @classmethod
    def of(cls, dataset: Dataset) -> Catalog:
        categories = encode_categories(dataset.items.get_column("categories"))
        year = dataset.items.get_column("release_year").cast(pl.Float64).fill_null(float("nan")).to_numpy()
        mainstream = (dataset.items.get_column("mainstream").fill_null(False).to_numpy().astype(bool)
                      if "mainstream" in dataset.items.columns else None)
        return cls(categories.codes, len(categories.names), categories.primary, year, mainstream)

    def served_sources(self, history: Histories, n: int) -> list[np.ndarray]:
        """The served path's non-personalized candidate sources over `history`'s popularity, as
        serving orders them (`recsys.columns.popularity_orders`): the `n` most popular items, then
        the editorial pool's `n` most popular; [] for n = 0."""
        if not n:
            return []
        popularity = np.bincount(history.items, minlength=history.n_items).astype(np.float32)
        pool = self.mainstream if self.mainstream is not None else np.zeros(history.n_items, dtype=bool)
        orders = popularity_orders(popularity, self.primary, pool)
        return [orders["popular_order"][:n], orders["mainstream_order"][:n]]


def fit_retrieval(history: Histories, config: TrainingConfig, engine: Engine | None = None) -> ALS:
    return (engine or LocalEngine()).fit_als(history.matrix(), config.als)


def fit_sequence_source(history: Histories, config: TrainingConfig) -> SequentialSource | None:
    """The sequential candidate source fitted on `history` (time-ordered positives), or None when
    `config.sequential.enabled` is off. Fitted in this process whatever the engine (a small
    CPU model; the engines distribute ALS and the ranker)."""
    if not config.sequential.enabled:
        return None
    return fit_sequential(history, config.sequential.sasrec, config.index, config.sequential.n_candidates)


def stats_for(model: ALS, history: Histories, catalog: Catalog, config: TrainingConfig) -> ItemStats:
    return item_stats(model.item_factors, history.items, history.timestamps, catalog.codes, catalog.n_categories,
                      catalog.release_year, config.features)


IMPORTANCE_PREFIX = "importance_"  # validation metrics: each ranker feature's share of the permutation importance


def train_ranker(split: Split, catalog: Catalog, config: TrainingConfig, progress: bool = False,
                 engine: Engine | None = None) -> tuple[Ranker, dict[str, float]]:
    """Fit ALS on the inner part of a validation split, label its candidates, train the ranker."""
    engine = engine or LocalEngine()
    validation = validation_split(split, config.protocol.test_share)
    retrieval = fit_retrieval(validation.train, config, engine)
    stats = stats_for(retrieval, validation.train, catalog, config)
    # The same index policy as serving (exact below the size threshold), so the ranker learns on the
    # candidates it will be given.
    active = validation.train.lengths > 0
    index = build_index(retrieval.item_factors, config=config.index, sample_queries=retrieval.user_factors[active])
    # The sequential source too, fitted on the same inner part (never on the labels), so the ranker
    # learns how far to trust each source on candidates like serving's.
    sequential = fit_sequence_source(validation.train, config)
    lists, candidates = ranking_lists(stats, retrieval.user_factors, validation, index.search, config.n_candidates,
                                      config.features, progress, retrieval.item_factors, sequential,
                                      catalog.served_sources(validation.train, config.ranker.popular_candidates),
                                      catalog.mainstream)
    fit_lists, stop_lists = split_lists(lists, config.ranker.early_stopping_share, config.seed)
    if not len(fit_lists.labels):
        raise ValueError("ranker: no validation user has a held-out positive among the candidates; "
                         "the dataset is too small or n_candidates too low")
    ranker = make_ranker(config.ranker.kind, FEATURE_NAMES, config.ranker.params, seed=config.seed)
    ranker, report = engine.fit_ranker(ranker, fit_lists, stop_lists if len(stop_lists.labels) else None)
    metrics = list_metrics(ranker, lists, candidates, validation.test, config.protocol.k)
    metrics.update({f"ranker_{k}": v for k, v in report.items()})
    metrics["lists"] = float(len(fit_lists.labels))
    # How much each feature matters, on lists the ranker did not fit (the transparency page's
    # relative importance of each signal, DSA Art. 27).
    held_out = stop_lists if len(stop_lists.labels) else fit_lists
    importance = permutation_importance(ranker, held_out, k=config.protocol.k, seed=config.seed)
    metrics.update({f"{IMPORTANCE_PREFIX}{name}": share for name, share in importance.shares.items()})
    return ranker, metrics


def assemble(directory: Path, dataset: Dataset, user_ids: np.ndarray, history: Histories, seen: Histories,
             retrieval: ALS, ranker: Ranker, catalog: Catalog, config: TrainingConfig, manifest: dict[str, Any],
             sequential: SequentialSource | None = None) -> Path:
    """Build the index over `retrieval`'s item vectors and write the bundle (`seen`: every
    interaction of the training window at any rating, what serving excludes; `sequential`: the
    second candidate source, None when switched off)."""
    stats = stats_for(retrieval, history, catalog, config)
    active = history.lengths > 0
    index = build_index(retrieval.item_factors, config=config.index, sample_queries=retrieval.user_factors[active])
    parts = BundleParts(
        items=dataset.items,
        users=dataset.users,
        user_ids=user_ids,
        history=history,
        seen=seen,
        item_factors=retrieval.item_factors,
        user_factors=retrieval.user_factors,
        stats=stats,
        index=index,
        ranker=ranker,
        sequential=sequential,
        manifest={
            "retrieval": {"kind": config.retrieval, "factors": config.als.factors,
                          "regularization": config.als.regularization, "alpha": config.als.alpha},
            "feature_config": config.features.model_dump(mode="json"),
            "n_candidates": config.n_candidates,
            "training_config": config.model_dump(mode="json"),
            **manifest,
        },
    )
    return write_bundle(directory, parts)


def evaluate_bundle(bundle: ModelBundle, split: Split, config: TrainingConfig) -> tuple[dict[str, float], dict[str, float]]:
    """(protocol metrics of the two-stage model under both exclusion rules, candidate recall@N of
    its retrieval stage per rule: {"seen": ..., "positives": ...}).

    Under "seen" the candidates exclude every item the user rated before the test part (what
    serving does with `ModelBundle.user_seen`); under "positives" only the train positives."""
    if list(bundle.item_ids) != list(split.item_ids):
        raise ValueError(f"{bundle.path}: the bundle's items differ from the dataset's; evaluate on the dataset it was trained on")
    users = split.test_users()
    lists, recall_n = {}, {}
    for rule, exclude in ((EXCLUDE_SEEN, split.seen), (EXCLUDE_POSITIVES, None)):
        candidates = bundle.candidates(split.train, users, config.n_candidates, exclude)
        lists[rule] = bundle.rank(candidates, config.protocol.k)
        recall_n[rule] = candidate_recall(candidates.items, users, split.test)
    return summarize_rules(lists, users, split, bundle.item_category, config.protocol.k), recall_n


def baseline_models(names: tuple[str, ...], config: TrainingConfig, fitted_als: ALS | None = None) -> dict[str, Recommender]:
    """Unfitted retrieval models by name, built from their typed configs; "als" is `fitted_als` when given."""
    models: dict[str, Recommender] = {}
    for name in names:
        if name == "als" and fitted_als is not None:
            models[name] = fitted_als
            continue
        settings = getattr(config, name, None)  # the model's typed config, when it has one
        models[name] = model_class(name)(settings) if settings is not None else model_class(name)()
    return models


def evaluate_baselines(names: tuple[str, ...], split: Split, item_category: np.ndarray, config: TrainingConfig,
                       fitted_als: ALS) -> dict[str, dict[str, float]]:
    """The protocol's row for each named retrieval model; ALS is the one the two-stage model uses."""
    table = {}
    train_matrix = split.train.matrix()
    for name, model in baseline_models(names, config, fitted_als).items():
        if model is not fitted_als:
            model.fit(train_matrix)
        table[MODEL_LABELS[name]] = evaluate_scorer(model, split, item_category, config.protocol.k)
    return table


@dataclass
class OfflineResult:
    """Everything `run_offline` computed: the bundle written, the test table, validation figures."""

    bundle_dir: Path
    metrics: dict[str, dict[str, float]]
    validation: dict[str, float]
    candidate_recall: float  # retrieval recall@N, train positives excluded (the published protocol's rule)
    dataset: Dataset
    split: Split
    review: ReviewReport | None = None
    unseen_candidate_recall: float = float("nan")  # retrieval recall@N, every seen item excluded (served reality)


def run_offline(dataset: Dataset, config: TrainingConfig, workdir: Path, *, full: bool = False,
                stages: Stages | None = None, manifest: dict[str, Any] | None = None,
                baselines: tuple[str, ...] | None = None, progress: bool = False,
                review: bool = False, policy: PolicyConfig | None = None, engine: Engine | None = None) -> OfflineResult:
    """Both stages, the bundle and the evaluation, without MLflow (the benchmark calls this).

    `review=True` also runs the periodic review (`training.review`) of the evaluated bundle with
    `config.review` thresholds and the serving `policy`. `engine` fits ALS and the ranker (default:
    in this process).
    """
    config = config.effective()
    engine = engine or LocalEngine()
    stages = stages or Stages(progress=False)
    manifest = dict(manifest or {})
    with stages.stage("split"):
        split = protocol_split(dataset, config.protocol.min_rating, config.protocol.test_share)
        catalog = Catalog.of(dataset)
    with stages.stage("ranker"):
        ranker, validation = train_ranker(split, catalog, config, progress, engine)
    with stages.stage("retrieval"):
        retrieval = fit_retrieval(split.train, config, engine)
    with stages.stage("sequential"):
        sequential = fit_sequence_source(split.train, config)
    honest_dir = workdir / ("honest-bundle" if full else "bundle")
    with stages.stage("index+bundle"):
        assemble(honest_dir, dataset, split.user_ids, split.train, split.known(), retrieval, ranker, catalog, config,
                 {**manifest, "trained_on": "train split", "full": False}, sequential)
    with stages.stage("evaluate"):
        bundle = ModelBundle.load(honest_dir, serving=False)
        two_stage, recall_n = evaluate_bundle(bundle, split, config)
        table = evaluate_baselines(baselines if baselines is not None else config.baselines, split,
                                   bundle.item_category, config, retrieval)
        table[MODEL_LABELS["two_stage"]] = two_stage
    report = None
    if review:
        with stages.stage("review (Art. 8)"):
            report = run_review(bundle, split, config.review, policy, config.protocol.k)
    final_dir = honest_dir
    if full:
        with stages.stage("refit on all"):
            user_ids, item_ids, everything = positive_histories(dataset, config.protocol.min_rating)
            retrieval_all = fit_retrieval(everything, config, engine)
            sequential_all = fit_sequence_source(everything, config)
            final_dir = assemble(workdir / "bundle", dataset, user_ids, everything,
                                 interaction_histories(dataset, user_ids, item_ids), retrieval_all, ranker, catalog,
                                 config, {**manifest, "trained_on": "all positives", "full": True}, sequential_all)
    final_manifest = json.loads((final_dir / "manifest.json").read_text())
    n = config.n_candidates
    final_manifest["metrics"] = {"test": table, "validation": validation,
                                 f"candidate_recall_at_{n}": recall_n[EXCLUDE_POSITIVES],
                                 f"unseen_candidate_recall_at_{n}": recall_n[EXCLUDE_SEEN]}
    final_manifest["feature_importance"] = {key.removeprefix(IMPORTANCE_PREFIX): value for key, value in validation.items()
                                            if key.startswith(IMPORTANCE_PREFIX)}
    if report is not None:
        final_manifest["review"] = report.to_dict()
    write_manifest(final_dir, final_manifest)
    return OfflineResult(final_dir, table, validation, recall_n[EXCLUDE_POSITIVES], dataset, split, report,
                         recall_n[EXCLUDE_SEEN])


# -- evaluating a registered model ------------------------------------------------------------------


class EvaluationMismatch(ValueError):
    """The model cannot be evaluated on this dataset's protocol split; the message names the flag."""


class FactorScores:
    """Scores from fixed user and item vectors (ALS alone, as stored in a bundle)."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray):
        self.user_factors, self.item_factors = user_factors, item_factors

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        return self.user_factors[np.asarray(user_idx)] @ self.item_factors.T


def evaluate_registered(bundle: ModelBundle, dataset: Dataset) -> dict[str, dict[str, float]]:
    """MostPopular, ALS alone (the bundle's vectors) and the two-stage bundle on `dataset`'s test split,
    under both exclusion rules (the split, not the bundle, says what each user had seen: a format-1
    bundle is evaluated the same way)."""
    if bundle.manifest.get("full"):
        raise EvaluationMismatch("--model-uri: this model was refitted on all positives (--full); its test split is "
                                 "part of its training data, so evaluate a train-split model instead")
    config = TrainingConfig.model_validate(bundle.manifest.get("training_config", {}))
    split = protocol_split(dataset, config.protocol.min_rating, config.protocol.test_share)
    if list(split.item_ids) != list(bundle.item_ids):
        raise EvaluationMismatch(f"--dataset: {dataset.name}'s items differ from the model's ({len(bundle.item_ids)} items)")
    same_history = (np.array_equal(split.user_ids, bundle.user_ids) and np.array_equal(split.train.indptr, bundle.history.indptr)
                    and np.array_equal(split.train.items, bundle.history.items))
    if not same_history:
        raise EvaluationMismatch(f"--dataset: {dataset.name}'s train split is not the data this model was trained on")
    popular = MostPopular().fit(split.train.matrix())
    table = {
        MODEL_LABELS["popular"]: evaluate_scorer(popular, split, bundle.item_category, config.protocol.k),
        MODEL_LABELS["als"]: evaluate_scorer(FactorScores(bundle.user_factors, bundle.item_factors), split,
                                             bundle.item_category, config.protocol.k),
    }
    table[MODEL_LABELS["two_stage"]], _ = evaluate_bundle(bundle, split, config)
    return table


def log_evaluation(table: dict[str, dict[str, float]], model_uri: str, version: str, dataset: str) -> str:
    """One MLflow run holding an evaluation table; returns its run id."""
    import mlflow

    from recsys import registry

    _quiet_mlflow_logs()
    mlflow.set_tracking_uri(registry.tracking_uri())
    settings = core_settings()
    experiment_id = _experiment(settings.experiment_name, settings.mlflow_artifacts_dir)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluate-{dataset}") as run:
        mlflow.set_tags({"kind": "evaluation", "model_uri": model_uri, "model_version": version, "dataset": dataset})
        metrics = {}
        for label, row in table.items():
            key = next(k for k, v in MODEL_LABELS.items() if v == label)
            metrics.update({f"{key}/{name}": value for name, value in row.items() if np.isfinite(value)})
        mlflow.log_metrics(metrics)
        mlflow.log_text(evaluation_markdown(table), "evaluation.md")
        return run.info.run_id


# -- identity of data and config (for --reuse) ----------------------------------------------------


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 over the frames' Arrow IPC bytes: equal fingerprints mean the same training data."""
    digest = hashlib.sha256()
    for frame in (dataset.interactions.select("user_id", "item_id", "timestamp", "rating"), dataset.items, dataset.users.select("user_id", "age")):
        buffer = io.BytesIO()
        frame.write_ipc(buffer, compression="uncompressed")
        digest.update(buffer.getvalue())
    return digest.hexdigest()[:16]


# -- the MLflow run ------------------------------------------------------------------------------


def train(dataset: str | Path | Dataset, config: TrainingConfig | None = None, *, full: bool = False,
          set_alias: bool = True, reuse: bool = False, register: bool = True, progress: bool = True,
          source: str | None = None, policy: PolicyConfig | None = None, engine: Engine | None = None) -> TrainResult:
    """Train both stages on `dataset` in one MLflow run and register a model version.

    Every run performs the periodic review (Art. 8) against `config.review` with the serving list
    `policy` (default: `PolicyConfig()`); a version that fails it is registered but never given
    the serving alias. `set_alias=False` withholds the alias in any case (a later gate may call
    `recsys.registry.promote`). `reuse=True` returns the aliased version instead of training
    when it was trained on the same data with the same config and policy and written in the
    current bundle format (`recsys.bundle.FORMAT_VERSION`, tag `bundle_format`). `source` (a dataset
    name or folder) is recorded so `recsys evaluate` can find the data again. `engine` reads the
    dataset and fits the models (default: this process; `training.ray_engine.RayEngine` on Ray); the
    MLflow run, the review and the registration happen here, once, whatever the engine.
    """
    engine = engine or LocalEngine()
    with engine:
        return _train(dataset, config, full=full, set_alias=set_alias, reuse=reuse, register=register,
                      progress=progress, source=source, policy=policy, engine=engine)


def _train(dataset: str | Path | Dataset, config: TrainingConfig | None, *, full: bool, set_alias: bool, reuse: bool,
           register: bool, progress: bool, source: str | None, policy: PolicyConfig | None, engine: Engine) -> TrainResult:
    """`train` with its engine started."""
    import mlflow

    from recsys import registry

    config = (config or TrainingConfig()).effective()
    settings = core_settings()
    started = time.perf_counter()
    stages = Stages(progress)
    with stages.stage("load data"):
        data = dataset if isinstance(dataset, Dataset) else engine.read(dataset)
        fingerprint = dataset_fingerprint(data)
    config_hash = config.config_hash(full)
    policy = policy or PolicyConfig()
    _quiet_mlflow_logs()
    mlflow.set_tracking_uri(registry.tracking_uri())
    if reuse:
        found = _reusable(fingerprint, config_hash, policy_hash(policy))
        if found is not None:
            return found
    experiment_id = _experiment(settings.experiment_name, settings.mlflow_artifacts_dir)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{data.name}") as run:
        run_id = run.info.run_id
        stages.sink = lambda name, seconds, step: mlflow.log_metric(f"time/{_slug(name)}_s", seconds, step=step)
        mlflow.log_params(config.flat_params() | {"dataset": data.name, "full": str(full)} | engine.describe())
        mlflow.set_tags({"dataset": data.name, "dataset_fingerprint": fingerprint, "config_hash": config_hash,
                         "policy_hash": policy_hash(policy), "engine": engine.name})
        workdir = Path(tempfile.mkdtemp(prefix="train-", dir=_ensure(settings.var_dir / "training")))
        try:
            if source is None and not isinstance(dataset, Dataset):
                source = str(dataset)
            manifest = {"dataset": {"name": data.name, "source": source, "fingerprint": fingerprint,
                                    "interactions": data.interactions.height,
                                    "items": data.items.height, "users": data.users.height},
                        "run_id": run_id, "config_hash": config_hash, "engine": engine.name}
            offline = run_offline(data, config, workdir, full=full, stages=stages, manifest=manifest,
                                  review=True, policy=policy, engine=engine)
            _log_metrics(offline, config)
            review = offline.review
            mlflow.set_tag("review", "passed" if review.passed else "failed")
            with stages.stage("log + register"):
                bundle_manifest = json.loads((offline.bundle_dir / "manifest.json").read_text())
                _log_documents(workdir / "documents", offline, config, bundle_manifest, full)
                with warnings.catch_warnings():
                    # The signature is explicit, so MLflow's "no input example" advice does not apply.
                    warnings.filterwarnings("ignore", message=".*input example was not provided.*")
                    model_info = mlflow.pyfunc.log_model(
                        name=registry.MODEL_ARTIFACT,
                        python_model=registry.BundleModel(),  # pickled by reference to recsys.registry
                        artifacts={registry.BUNDLE_ARTIFACT: str(offline.bundle_dir)},
                        pip_requirements=pip_requirements(),
                        signature=registry.signature(),
                        registered_model_name=settings.model_name if register else None,
                    )
                version = _register(model_info, settings.model_name, fingerprint, config_hash, full, data.name,
                                    bundle_manifest["index_build_id"], set_alias and register and review.passed,
                                    {"policy_hash": review.policy_hash, "review": "passed" if review.passed else "failed"})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        total = time.perf_counter() - started
        mlflow.log_metric("time/total_s", total)
    timings = dict(stages.timings) | {"total": total}
    return TrainResult(
        run_id=run_id,
        model_version=version,
        model_uri=f"models:/{settings.model_name}/{version}" if version else model_info.model_uri,
        metrics=offline.metrics,
        validation=offline.validation,
        timings_s=timings,
        dataset=data.name,
        config_hash=config_hash,
        alias_set=bool(version) and set_alias and review.passed,
        review=review.to_dict(),
        engine=engine.name,
    )


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc model, listed so MLflow does not infer them."""
    out = []
    for package in PIP_PACKAGES:
        try:
            out.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            out.append(package)
    return out


def _log_metrics(offline: OfflineResult, config: TrainingConfig) -> None:
    import mlflow

    metrics: dict[str, float] = {}
    for label, row in offline.metrics.items():
        key = next(k for k, v in MODEL_LABELS.items() if v == label)
        metrics.update({f"{key}/{name}": value for name, value in row.items() if np.isfinite(value)})
    two_stage = offline.metrics[MODEL_LABELS["two_stage"]]
    k = config.protocol.k
    # Headline names of the two-stage model: `unseen_*` is the served reality (every seen item
    # excluded, the primary figure); the unprefixed ones keep their meaning (train positives
    # excluded, comparable with published numbers). The review's own figures (review/ndcg_at_10...,
    # what compliance.review checks) are those of the lists the serving path builds.
    for prefix in (RULE_PREFIX[EXCLUDE_SEEN], RULE_PREFIX[EXCLUDE_POSITIVES]):
        metrics.update({f"{prefix}ndcg_at_10": two_stage[f"{prefix}ndcg_at_{k}"],
                        f"{prefix}recall_at_10": two_stage[f"{prefix}recall_at_{k}"],
                        f"{prefix}catalog_coverage": two_stage[f"{prefix}catalog_coverage_at_{k}"]})
    metrics.update({f"retrieval/unseen_candidate_recall_at_{config.n_candidates}": offline.unseen_candidate_recall,
                    f"retrieval/candidate_recall_at_{config.n_candidates}": offline.candidate_recall})
    metrics.update({f"validation/{name}": value for name, value in offline.validation.items() if np.isfinite(value)})
    if offline.review is not None:
        metrics.update({f"review/{name}": value for name, value in offline.review.metrics.items() if np.isfinite(value)})
        metrics["review/passed"] = float(offline.review.passed)
    mlflow.log_metrics(metrics)


def _log_documents(directory: Path, offline: OfflineResult, config: TrainingConfig, manifest: dict, full: bool) -> None:
    import mlflow

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "training_config.json").write_text(config.model_dump_json(indent=2))
    (directory / "evaluation.md").write_text(evaluation_markdown(offline.metrics, config.protocol.k))
    (directory / "evaluation.json").write_text(json.dumps(offline.metrics, indent=2))
    (directory / "model_card.md").write_text(model_card(offline, config, manifest, full))
    if offline.review is not None:
        (directory / "review.md").write_text(offline.review.markdown())
        (directory / "review.json").write_text(json.dumps(offline.review.to_dict(), indent=2))
    mlflow.log_artifacts(str(directory))


def table_columns(k: int = 10) -> list[str]:
    """The evaluation table's columns: the served-reality rule (`unseen_*`) first, then the
    published protocol's positives-only ones."""
    names = [f"ndcg_at_{k}", f"recall_at_{k}", f"catalog_coverage_at_{k}", f"genres_at_{k}"]
    return [RULE_PREFIX[EXCLUDE_SEEN] + name for name in names] + [RULE_PREFIX[EXCLUDE_POSITIVES] + name for name in names]


def evaluation_markdown(table: dict[str, dict[str, float]], k: int = 10) -> str:
    columns = table_columns(k)
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for label, row in table.items():
        lines.append(f"| {label} | " + " | ".join(f"{row.get(c, float('nan')):.4f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def model_card(offline: OfflineResult, config: TrainingConfig, manifest: dict, full: bool) -> str:
    k = config.protocol.k
    dataset = manifest.get("dataset", {})
    features = "\n".join(f"- `{name}`" for name in manifest["feature_names"])
    return f"""# Model card: two-stage recommender

**Data**: {dataset.get('name')} (fingerprint {dataset.get('fingerprint')}): {dataset.get('interactions')} interactions,
{dataset.get('items')} items. Served model trained on: {manifest.get('trained_on')}.

**Architecture**: implicit ALS ({config.als.factors} factors, regularization {config.als.regularization},
alpha {config.als.alpha}, {config.als.iterations} iterations) ► Faiss index `{manifest['index']['kind']}`
(build {manifest['index_build_id']}, recall {manifest['index'].get('recall', 1.0):.3f}) ► top-{config.n_candidates}
candidates{sequential_line(config)} ► `{config.ranker.kind}` ranker trained on those candidates of a validation split
carved from train.

**Evaluation** (protocol: positives rating >= {config.protocol.min_rating:g}; per-user time split, last
ceil({config.protocol.test_share:g} n) to test; full ranking; averaged over users with a test item). `unseen_*`
columns (served reality, primary): every item the user rated at any value before the test part is excluded, as
serving excludes it; unprefixed columns (the published protocol): only the train positives are excluded.

{evaluation_markdown(offline.metrics, k)}
Retrieval recall of the top-{config.n_candidates} candidates: {offline.unseen_candidate_recall:.4f} (seen items
excluded), {offline.candidate_recall:.4f} (train positives excluded).
{"The served model was refitted on all positives after this evaluation (`full`); its own test figures would be optimistic." if full else ""}

**Ranker inputs** (behavioural only; no demographic or sensitive user attribute is an input):
{features}

**Limitations**: offline metrics on historical data; popularity and time features favour recent,
popular items; users without a history receive the non-personalised list.
"""


def sequential_line(config: TrainingConfig) -> str:
    """The model card's words for the second candidate source (nothing when it is switched off)."""
    if not config.sequential.enabled:
        return ""
    sasrec = config.sequential.sasrec
    return (f", merged with the top-{config.sequential.n_candidates} of a SASRec+ sequence model ({sasrec.blocks} "
            f"block(s), {sasrec.hidden} dims, the last {sasrec.max_len} items, {sasrec.epochs} epochs) from its own "
            "Faiss index")


def _register(model_info, name: str, fingerprint: str, config_hash: str, full: bool, dataset: str,
              build_id: str, set_alias: bool, extra_tags: dict[str, str] | None = None) -> str | None:
    from recsys import registry

    version = getattr(model_info, "registered_model_version", None)
    if version is None:
        return None
    client = registry.client()
    for key, value in {"dataset": dataset, "dataset_fingerprint": fingerprint, "config_hash": config_hash,
                       "full": str(full), "index_build_id": build_id, "bundle_format": str(FORMAT_VERSION),
                       **(extra_tags or {})}.items():
        client.set_model_version_tag(name, str(version), key, value)
    if set_alias:
        registry.promote(version, name=name)
    return str(version)


def _reusable(fingerprint: str, config_hash: str, policy: str) -> TrainResult | None:
    from recsys import registry

    version = registry.aliased_version()
    if version is None:
        return None
    tags = version.tags or {}
    if (tags.get("dataset_fingerprint") != fingerprint or tags.get("config_hash") != config_hash
            or tags.get("policy_hash") != policy or tags.get("review") != "passed"):
        return None
    # A version written in an older bundle format (e.g. format 1: no seen_*.npy, so serving could not
    # exclude low-rated items, and no unseen_* metrics) is retrained, not reused.
    if tags.get("bundle_format") != str(FORMAT_VERSION):
        return None
    run = registry.client().get_run(version.run_id)
    table: dict[str, dict[str, float]] = {}
    for key, value in run.data.metrics.items():
        model, _, metric = key.partition("/")
        if model in MODEL_LABELS:
            table.setdefault(MODEL_LABELS[model], {})[metric] = value
    return TrainResult(run_id=version.run_id, model_version=str(version.version),
                       model_uri=f"models:/{version.name}/{version.version}", metrics=table, reused=True,
                       dataset=tags.get("dataset", ""), config_hash=config_hash, alias_set=True)


def _experiment(name: str, artifacts_dir: Path) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=_ensure(Path(artifacts_dir)).resolve().as_uri())


def _quiet_mlflow_logs() -> None:
    """Keep the console to our stage lines: MLflow's database migrations and registration chatter go."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.models.model",
                 "mlflow.tracking._model_registry.fluent", "mlflow.tracking._model_registry.client"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # the python_model-is-pickled notice


def _ensure(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
