"""Quality benchmark: the offline protocol of DESIGN.md (MovieLens-100K by default) over several
seeds, for published peers, the project's two-stage model, and the lists the service would serve.

Rows (`QualityConfig.labels()`: the peers of `QualityConfig.peers`, the two-stage model, the surfaces
of `QualityConfig.surfaces`):

- peers, each one `recsys.retrieval.peers` model: MostPopular, RecencyPopular (popularity of the
  last N days before the user's request), ItemKNN (cosine), RP3beta, EASE, ALS and SASRec+ (SASRec
  with full softmax cross-entropy over the catalog). Each is tuned ONCE per run on a validation
  split carved from train (the last 20 % of each user's train positives, `validation_split`) by the
  primary rule's NDCG@10, with the first seed; the chosen setting is then refit on the full train
  split with every seed and scored on test (`GRIDS`, or `QUICK_GRIDS` with `quick=True`). Test is
  never used to choose anything. SASRec's epoch count is tuned with the rest (a monitor on the same
  validation metric keeps the best epoch, which the refit trains for).
- "two-stage": the project's model, trained by `training.pipeline.run_offline` (the code `recsys
  train` runs) with the training config's hyper-parameters (chosen on validation by training).
- "two-stage + policy" (home) and "two-stage + policy (feed)": the first page the server would
  serve on each surface, through the offline replay of the serving path (`training.review.
  OfflineServing`: retrieval, filters, extra sources, ranker, then the constraint engine with the
  surface's rules: de-duplication, dispersal and, on home, the front-screen mainstream slots).

Every row is scored by `recsys.evaluation` (the protocol's metrics, not re-implemented here) under
both exclusion rules: `unseen_*` (served reality, primary: every item the user rated at any value
before the first test positive excluded) and the unprefixed names (the published protocol: train
positives excluded). Beyond accuracy: catalog coverage, genres in the top 10, and the policy
violations each raw list would have (dispersal: more than 2 of one primary category in any 5
positions; duplicates by content key; flagged items), and the "price of compliance": NDCG@10 of a
served surface minus that of the two-stage model. The price of each rule separately
(`RULE_SWITCHES`): the first surface's served lists replayed with that one rule switched off, and
with every switchable rule off; a rule's price is what switching it off alone gives back (served
reality, NDCG@k). Where the price goes (`benchmarks.price_anatomy`): each rule alone on and the served
page against the page with every switchable rule off (items dropped and added, how often each is a
held-out film), and the editorial items each scorer would add to pages short of the front screen's
count. Results go to quality.json, quality.md (the tables) and the MLflow experiment "benchmarks".
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency import BenchmarkError, say
from benchmarks.price_anatomy import editorial_picks, list_changes, mean_over_seeds
from benchmarks.price_anatomy import markdown_lines as anatomy_lines

EXPERIMENT = "benchmarks"
DEFAULT_DATASET = "movielens-100k"
PEER_LABELS = {"popular": "MostPopular", "recency": "RecencyPopular", "itemknn": "ItemKNN", "rp3beta": "RP3beta",
               "ease": "EASE", "als": "ALS", "sasrec": "SASRec+"}
TWO_STAGE = "two-stage"
SERVED_HOME = "two-stage + policy"  # the served first page of `home` (its historical name)


# Each rule of the served policy, and the policy override that switches it (alone) off for the
# per-rule price. Item de-duplication cannot be switched off (a ranked list never repeats an item
# anyway); the minors rules apply to minors' lists only and the protocol scores adults' (the replay's
# audience), so they cost these lists nothing by construction and are not replayed.
RULE_SWITCHES: dict[str, dict[str, Any]] = {
    "content_dedup": {"dedup": {"content": False}},
    "dispersal": {"dispersal": {"window": 100, "max_per_window": 99}},  # a window no page of k <= 99 fills
    "front_screen": {"front_screen": {"positions": []}},
    "session_diversity": {"session_diversity": {"enabled": False}},
}
NO_RULES = "no switchable rule"


def rule_switch_policies() -> dict[str, dict[str, Any]]:
    """Label -> policy override: each rule of `RULE_SWITCHES` off alone, then all of them off."""
    out = dict(RULE_SWITCHES)
    out[NO_RULES] = {key: value for override in RULE_SWITCHES.values() for key, value in override.items()}
    return out


def only_rule_policies() -> dict[str, dict[str, Any]]:
    """Label -> policy override: each rule of `RULE_SWITCHES` on alone (every other one off)."""
    everything_off = rule_switch_policies()[NO_RULES]
    return {name: {key: value for key, value in everything_off.items() if key not in override}
            for name, override in RULE_SWITCHES.items()}


ALL_RULES = "all of them (the served page)"


def served_label(surface: str) -> str:
    """Row name of the served first page of `surface`."""
    return SERVED_HOME if surface == "home" else f"{SERVED_HOME} ({surface})"


def _product(**axes: list) -> list[dict[str, Any]]:
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


# The validation grids (small, around the values published peers report for MovieLens).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popular": [{}],
    "recency": _product(days=[1, 3, 7, 14, 30, 60, 90, 180], reference=["user", "global"]) + [{"days": None}],
    "itemknn": _product(neighbours=[10, 20, 50, 100, 200, 400, 800], shrinkage=[0.0, 10.0, 50.0]),
    "rp3beta": _product(alpha=[0.25, 0.5, 0.75, 1.0], beta=[0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8],
                        neighbours=[100, 200, 400, 800]),
    "ease": [{"regularization": value} for value in (50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0,
                                                       1500.0, 2000.0, 3000.0)],
    "als": _product(factors=[64, 128, 256], regularization=[10.0, 30.0, 100.0], alpha=[3.0, 10.0, 30.0]),
    # Epochs are tuned too (a monitor keeps the best of every 5, stopping after 2 checks without gain).
    "sasrec": [{"max_len": 50, "dropout": 0.5}, {"max_len": 200, "dropout": 0.5}, {"max_len": 200, "dropout": 0.7}],
}
# `quick=True`: one or two points each and a tiny SASRec (tests, smoke runs; not for numbers).
QUICK_GRIDS: dict[str, list[dict[str, Any]]] = {
    "popular": [{}],
    "recency": [{"days": 30.0}, {"days": None}],
    "itemknn": [{"neighbours": 50}, {"neighbours": 200}],
    "rp3beta": [{"alpha": 0.5, "beta": 0.5, "neighbours": 200}, {"alpha": 1.0, "beta": 0.0, "neighbours": 200}],
    "ease": [{"regularization": 100.0}, {"regularization": 500.0}],
    "als": [{"factors": 16, "regularization": 10.0, "alpha": 10.0, "iterations": 5}],
    "sasrec": [{"max_len": 20, "hidden": 16, "blocks": 1, "epochs": 4, "eval_every": 2, "batch_size": 64}],
}


@dataclass(frozen=True)
class QualityConfig:
    dataset: str = DEFAULT_DATASET  # a dataset name or a dataset folder
    seeds: tuple[int, ...] = (0, 1, 2)
    k: int = 10
    surfaces: tuple[str, ...] = ("home", "feed")  # served first pages (the first is the price of compliance's)
    peers: tuple[str, ...] = tuple(PEER_LABELS)  # peers to tune and score (keys of `PEER_LABELS`)
    quick: bool = False  # QUICK_GRIDS instead of GRIDS
    rule_prices: bool = True  # replay the first surface with each rule off (RULE_SWITCHES)
    mlflow: bool = True
    grids: dict[str, list[dict[str, Any]]] | None = field(default=None, hash=False, compare=False)  # overrides per peer

    def __post_init__(self) -> None:
        if not self.seeds:
            raise BenchmarkError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
        if len(set(self.seeds)) != len(self.seeds):
            raise BenchmarkError(f"--seeds: repeated seed in {list(self.seeds)}")
        if not 1 <= self.k <= 100:
            raise BenchmarkError(f"k: must be in 1..100, got {self.k}")
        unknown = [p for p in self.peers if p not in PEER_LABELS]
        if unknown:
            raise BenchmarkError(f"peers: unknown {unknown}; known: {', '.join(PEER_LABELS)}")
        if not self.surfaces or len(set(self.surfaces)) != len(self.surfaces):
            raise BenchmarkError(f"surfaces: give distinct surface names, got {list(self.surfaces)}")
        for key, grid in (self.grids or {}).items():
            if key not in PEER_LABELS or not grid:
                raise BenchmarkError(f"grids: {key!r} needs a non-empty list of parameter sets for a known peer")

    @property
    def surface(self) -> str:
        """The surface whose served list the price of compliance is measured on."""
        return self.surfaces[0]

    def grid(self, key: str) -> list[dict[str, Any]]:
        if self.grids and key in self.grids:
            return self.grids[key]
        return (QUICK_GRIDS if self.quick else GRIDS)[key]

    def labels(self) -> list[str]:
        return [PEER_LABELS[p] for p in self.peers] + [TWO_STAGE] + [served_label(s) for s in self.surfaces]


def tune_peers(split, config: QualityConfig) -> dict[str, dict]:
    """Tune every peer once on the validation split carved from `split.train` (first seed)."""
    from recsys.evaluation import validation_split
    from recsys.retrieval.peers import tune

    validation = validation_split(split)
    tunings = {}
    for key in config.peers:
        grid = config.grid(key)
        say(f"quality: tuning {PEER_LABELS[key]} on validation ({len(grid)} setting(s))")
        tuning = tune(key, grid, validation, seed=config.seeds[0], k=config.k)
        tunings[key] = tuning.to_dict()
        say(f"quality:   chose {tuning.chosen} (validation unseen NDCG@{config.k} "
            f"{tuning.validation[f'unseen_ndcg_at_{config.k}']:.4f}, {tuning.seconds:.1f} s)")
    return tunings


def _same_split(a, b) -> bool:
    return (np.array_equal(a.train.indptr, b.train.indptr) and np.array_equal(a.train.items, b.train.items)
            and np.array_equal(a.test.items, b.test.items) and list(a.item_ids) == list(b.item_ids))


def evaluate_seed(dataset, seed: int, config: QualityConfig, training_config=None, tunings: dict | None = None,
                  split=None) -> dict:
    """Train the two-stage model with `seed` through the real pipeline, refit every peer with its
    tuned setting and `seed`, then score every row's lists with the protocol under both rules."""
    from compliance.policy import PolicyConfig
    from recsys.bundle import ModelBundle
    from recsys.evaluation import EXCLUDE_POSITIVES, EXCLUDE_SEEN, RULE_PREFIX, RULES, scorer_top_k, summarize_rules
    from recsys.retrieval.peers import make_peer
    from training.config import TrainingConfig
    from training.pipeline import run_offline
    from training.review import OfflineServing, list_violations, one_thread

    base = training_config or TrainingConfig()
    cfg = base.model_copy(update={"seed": seed}).effective()
    policy = PolicyConfig()
    workdir = Path(tempfile.mkdtemp(prefix=f"quality-s{seed}-"))
    timings = {}
    tunings = tunings or {}
    try:
        started = time.perf_counter()
        offline = run_offline(dataset, cfg, workdir, baselines=())
        timings["train_two_stage_s"] = round(time.perf_counter() - started, 2)
        bundle = ModelBundle.load(offline.bundle_dir, serving=False)
        if split is not None and not _same_split(split, offline.split):
            raise BenchmarkError("quality: the training pipeline split the data differently from the benchmark "
                                 "(protocol settings differ); peers and the two-stage model must share one split")
        split = offline.split
        users = split.test_users()
        exclusion = {rule: split.exclusion(rule) for rule in RULES}
        labels = config.labels()
        lists: dict[str, dict[str, np.ndarray]] = {label: {} for label in labels}  # label -> rule -> lists
        for key in config.peers:
            started = time.perf_counter()
            chosen = tunings[key]["chosen"] if key in tunings else config.grid(key)[0]
            model = make_peer(key, chosen, seed).fit(split.train)
            timings[f"{key}_fit_s"] = round(time.perf_counter() - started, 2)
            for rule in RULES:
                lists[PEER_LABELS[key]][rule] = scorer_top_k(model, exclusion[rule])(users, config.k)
            timings[f"{key}_s"] = round(time.perf_counter() - started, 2)
        for rule in RULES:
            lists[TWO_STAGE][rule] = bundle.recommend(users, config.k, exclude_seen=rule == EXCLUDE_SEEN)
        known = split.known()
        histories = [split.train.of(int(u)) for u in users]
        for surface in config.surfaces:
            started = time.perf_counter()
            with one_thread():  # per-list work, as serving runs it
                # No user ids: the replay recomputes each user's vector from the train history and
                # excludes the history plus `seen`, so the positives-only rule stays a rule (the
                # server, given the id, would exclude every stored seen item under both).
                path = OfflineServing(bundle, policy, surface=surface)
                for rule in RULES:
                    seen = [known.of(int(u)) for u in users] if rule == EXCLUDE_SEEN else None
                    lists[served_label(surface)][rule] = path.lists(histories, config.k, seen=seen)
            timings[f"served_{surface}_s"] = round(time.perf_counter() - started, 2)
        rule_ndcg: dict[str, float] = {}
        anatomy: dict[str, Any] = {}
        if config.rule_prices:
            started = time.perf_counter()
            seen = [known.of(int(u)) for u in users]
            ndcg_name = f"unseen_ndcg_at_{config.k}"

            def replay(override: dict[str, Any]) -> tuple[np.ndarray, float]:
                path = OfflineServing(bundle, PolicyConfig.model_validate(override), surface=config.surface)
                replayed = path.lists(histories, config.k, seen=seen)
                return replayed, summarize_rules({EXCLUDE_SEEN: replayed}, users, split, bundle.item_category,
                                                 config.k)[ndcg_name]

            with one_thread():
                for name, override in rule_switch_policies().items():
                    replayed, rule_ndcg[name] = replay(override)
                    if name == NO_RULES:
                        unconstrained = replayed
                editorial = np.asarray(bundle.mainstream, dtype=bool)
                rows: dict[str, dict[str, float]] = {}
                only = {name: replay(override) for name, override in only_rule_policies().items()}
                served = lists[served_label(config.surface)][EXCLUDE_SEEN]
                only[ALL_RULES] = (served, summarize_rules({EXCLUDE_SEEN: served}, users, split, bundle.item_category,
                                                           config.k)[ndcg_name])
                for name, (replayed, ndcg) in only.items():
                    rows[name] = {"ndcg": ndcg} | list_changes(unconstrained, replayed, users, split.test, editorial)
                picks = editorial_picks(OfflineServing(bundle, policy, surface=config.surface), unconstrained, users,
                                        histories, seen, split.test, editorial, policy.front_screen.required,
                                        np.bincount(split.train.items, minlength=split.n_items).astype(float), seed)
                anatomy = {"rules": rows, "editorial_picks": picks}
            timings["rule_prices_s"] = round(time.perf_counter() - started, 2)
        table = {}
        for label in labels:
            row = summarize_rules(lists[label], users, split, bundle.item_category, config.k)
            for rule in RULES:
                violations = list_violations(lists[label][rule], bundle.item_category, bundle.content_code, bundle.flagged,
                                             policy.dispersal.window, policy.dispersal.max_per_window)
                row.update({RULE_PREFIX[rule] + name: value for name, value in violations.items()})
            table[label] = row
        reference = offline.metrics.get(TWO_STAGE, {})
        return {"seed": seed, "metrics": table, "rule_off_ndcg": rule_ndcg, "anatomy": anatomy,
                "pipeline_two_stage": reference,
                "timings_s": timings,
                "users_evaluated": int(len(users)), "items": int(split.n_items),
                "candidate_recall": offline.candidate_recall, "unseen_candidate_recall": offline.unseen_candidate_recall,
                "rules": {rule: RULE_PREFIX[rule] or "(no prefix)" for rule in (EXCLUDE_SEEN, EXCLUDE_POSITIVES)}}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": float(np.min(values)), "max": float(np.max(values))}


def aggregate(per_seed: list[dict], k: int, surfaces: tuple[str, ...] = ("home",)) -> dict:
    """Mean, standard deviation (ddof 1), min and max over seeds of every metric of every row, and
    the price of compliance of each served surface (its NDCG@k minus the two-stage model's)."""
    out: dict[str, dict] = {}
    for label, first in per_seed[0]["metrics"].items():
        out[label] = {name: _spread(np.asarray([s["metrics"][label][name] for s in per_seed], dtype=float))
                      for name in first}

    def price_of(label: str) -> dict:
        price: dict = {}
        for prefix in ("", "unseen_"):  # the published protocol's names, then the served reality's
            ndcg = f"{prefix}ndcg_at_{k}"
            deltas = np.asarray([s["metrics"][label][ndcg] - s["metrics"][TWO_STAGE][ndcg] for s in per_seed])
            relative = np.asarray([d / s["metrics"][TWO_STAGE][ndcg] for d, s in zip(deltas, per_seed)])
            price[f"{prefix}ndcg_delta"] = {key: v for key, v in _spread(deltas).items() if key in ("mean", "std")}
            price[f"{prefix}ndcg_relative"] = {key: v for key, v in _spread(relative).items() if key in ("mean", "std")}
        return price

    by_surface = {surface: price_of(served_label(surface)) for surface in surfaces
                  if served_label(surface) in per_seed[0]["metrics"]}
    price = dict(by_surface.get(surfaces[0], {}))
    price["surface"] = surfaces[0]
    price["by_surface"] = by_surface
    price["explanation"] = (f"NDCG@{k} of the two-stage model followed by the policy pipeline of the {surfaces[0]} surface "
                            "minus that of the two-stage model (unseen_*: every seen item excluded; otherwise train "
                            "positives excluded)")
    summary = {"models": out, "price_of_compliance": price}
    if per_seed[0].get("rule_off_ndcg"):
        summary["rule_prices"] = rule_prices(per_seed, k, served_label(surfaces[0]))
    if per_seed[0].get("anatomy"):
        summary["anatomy"] = mean_over_seeds([s["anatomy"] for s in per_seed])
    return summary


def rule_prices(per_seed: list[dict], k: int, served: str) -> dict:
    """Per rule of `RULE_SWITCHES` (and all of them): served-reality NDCG@k of the served lists
    with that rule off minus with every rule on (what the rule costs), absolute and relative to
    the two-stage model, mean and sd over seeds."""
    ndcg = f"unseen_ndcg_at_{k}"
    out: dict[str, dict] = {}
    for name in per_seed[0]["rule_off_ndcg"]:
        off = np.asarray([s["rule_off_ndcg"][name] for s in per_seed])
        on = np.asarray([s["metrics"][served][ndcg] for s in per_seed])
        model = np.asarray([s["metrics"][TWO_STAGE][ndcg] for s in per_seed])
        out[name] = {"ndcg_rule_off": _spread(off), "price": _spread(off - on), "price_relative": _spread((off - on) / model)}
    return out


# -- the table (quality.md, and the report's quality section) --------------------------------------------


def _pm(stats: dict | None, digits: int = 4) -> str:
    if not stats:
        return "n/a"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _params(params: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in params.items()) or "-"


def tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of the benchmark's tables: one per exclusion rule (accuracy, coverage,
    genres, raw-list policy violations, mean ± sd over seeds), then the chosen hyper-parameters."""
    k = result["config"]["k"]
    models = result["summary"]["models"]
    out = []
    for prefix, title in (("unseen_", "Served reality (primary): every item rated before the first test positive excluded"),
                          ("", "Positives only (published protocol): train positives excluded")):
        headers = ["model", f"NDCG@{k}", f"Recall@{k}", f"coverage@{k}", f"genres@{k}", "dispersal violations / list",
                   "lists violating dispersal", "content duplicates / list"]
        rows = []
        for label, values in models.items():
            if f"{prefix}ndcg_at_{k}" not in values:
                continue
            share = values.get(f"{prefix}lists_with_dispersal_violation")
            rows.append([label, _pm(values[f"{prefix}ndcg_at_{k}"]), _pm(values[f"{prefix}recall_at_{k}"]),
                         _pm(values.get(f"{prefix}catalog_coverage_at_{k}"), 3),
                         _pm(values.get(f"{prefix}genres_at_{k}"), 2),
                         _pm(values.get(f"{prefix}dispersal_violations_per_list"), 2),
                         f"{100 * share['mean']:.0f} %" if share else "n/a",
                         _pm(values.get(f"{prefix}content_duplicates_per_list"), 3)])
        out.append((title, headers, rows))
    tuned = result.get("tuning") or {}
    if tuned:
        rows = [[PEER_LABELS.get(key, key), _params(t["chosen"]), f"{t['validation'][f'unseen_ndcg_at_{k}']:.4f}",
                 f"{t['validation'][f'ndcg_at_{k}']:.4f}", str(len(t["trace"])), f"{t['seconds']:.1f}"]
                for key, t in tuned.items()]
        two_stage = result.get("two_stage_config")
        if two_stage:
            rows.append([TWO_STAGE, _params(two_stage), "(training's choice)", "", "", ""])
        out.append((f"Hyper-parameters chosen on the validation split (seed {result['config']['seeds'][0]})",
                    ["model", "chosen", f"validation unseen NDCG@{k}", f"validation NDCG@{k}", "settings tried",
                     "tuning s"], rows))
    return out


def markdown(result: dict) -> str:
    """quality.md: the tables of `tables` with a header naming the protocol and the run."""
    config = result["config"]
    lines = [f"# Quality on {result['dataset']['name']}", "",
             f"Protocol: {result['protocol']}. Mean ± sd over seeds {', '.join(map(str, config['seeds']))}; "
             f"{result['per_seed'][0]['users_evaluated']} test users, {result['per_seed'][0]['items']} items. "
             f"Benchmark time {result.get('duration_s', float('nan')):.0f} s.", ""]
    for title, headers, rows in tables(result):
        lines += [f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    prices = result["summary"].get("rule_prices")
    if prices:
        surface = result["summary"]["price_of_compliance"]["surface"]
        lines += [f"## Price of each rule on {surface} (served reality NDCG@{config['k']}, the rule off minus all on)", "",
                  f"| rule switched off | NDCG@{config['k']} | price | price / two-stage |", "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {_pm(p['ndcg_rule_off'])} | {_pm(p['price'])} | {100 * p['price_relative']['mean']:.1f} % |"
                  for name, p in prices.items()]
        lines += ["", "Item de-duplication cannot be switched off; the minors rules apply to minors' lists only "
                  "(the protocol scores adults'), so neither is replayed.", ""]
    if result["summary"].get("anatomy"):
        lines += anatomy_lines(result["summary"]["anatomy"], config["k"])
    price = result["summary"]["price_of_compliance"]
    for surface, values in price.get("by_surface", {}).items():
        lines.append(f"Price of compliance on {surface}: unseen NDCG@{config['k']} "
                     f"{values['unseen_ndcg_delta']['mean']:+.4f} ({100 * values['unseen_ndcg_relative']['mean']:+.1f} %), "
                     f"positives-only {values['ndcg_delta']['mean']:+.4f} ({100 * values['ndcg_relative']['mean']:+.1f} %).")
    return "\n".join(lines) + "\n"


# -- MLflow and the run ---------------------------------------------------------------------------


def slug(label: str) -> str:
    """An MLflow-safe metric prefix: "two-stage + policy" -> "two_stage_plus_policy", "SASRec+" -> "sasrec_plus"."""
    return re.sub(r"[^a-z0-9]+", "_", label.replace("+", " plus ").lower()).strip("_")


def log_to_mlflow(result: dict, artifact: Path) -> str | None:
    """One run in the "benchmarks" experiment: params (with each peer's chosen setting), mean/std
    per model and metric, the JSON and the Markdown table."""
    import mlflow

    from recsys.config import core_settings
    from recsys.registry import tracking_uri

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
        params = {"dataset": result["dataset"]["name"], "seeds": ",".join(map(str, result["config"]["seeds"])),
                  "k": result["config"]["k"], "surfaces": ",".join(result["config"]["surfaces"]),
                  "quick": result["config"]["quick"]}
        for key, tuning in (result.get("tuning") or {}).items():
            params.update({f"{key}.{name}": value for name, value in tuning["chosen"].items()})
        mlflow.log_params(params)
        metrics = {}
        for label, values in result["summary"]["models"].items():
            for name, stats in values.items():
                if name == "users":
                    continue
                metrics[f"{slug(label)}.{name}.mean"] = stats["mean"]
                metrics[f"{slug(label)}.{name}.std"] = stats["std"]
        price = result["summary"]["price_of_compliance"]
        for prefix in ("", "unseen_"):
            if f"{prefix}ndcg_delta" in price:
                metrics[f"price_of_compliance.{prefix}ndcg_delta.mean"] = price[f"{prefix}ndcg_delta"]["mean"]
                metrics[f"price_of_compliance.{prefix}ndcg_relative.mean"] = price[f"{prefix}ndcg_relative"]["mean"]
        for name, values in result["summary"].get("rule_prices", {}).items():
            metrics[f"rule_price.{slug(name)}.mean"] = values["price"]["mean"]
            metrics[f"rule_price.{slug(name)}.relative.mean"] = values["price_relative"]["mean"]
        anatomy = result["summary"].get("anatomy") or {}
        for name, row in anatomy.get("rules", {}).items():
            metrics.update({f"anatomy.{slug(name)}.{key}": value for key, value in row.items() if np.isfinite(value)})
        for name, rate in anatomy.get("editorial_picks", {}).get("pick_hit_rate", {}).items():
            if np.isfinite(rate):
                metrics[f"anatomy.editorial_pick.{slug(name)}.hit_rate"] = rate
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(artifact))
        if (artifact.parent / "quality.md").exists():
            mlflow.log_artifact(str(artifact.parent / "quality.md"))
        return run.info.run_id


def run(config: QualityConfig, out_dir: Path, machine: dict | None = None, training_config=None) -> dict:
    """Tune the peers once, then every seed, the aggregate and the MLflow run; writes
    out_dir/quality.json and out_dir/quality.md and returns the result."""
    from recsys.datasets import load
    from recsys.evaluation import protocol_split
    from recsys.schema import SchemaError
    from training.config import TrainingConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    try:
        dataset = load(config.dataset)
    except SchemaError as exc:
        raise BenchmarkError(f"--dataset: {exc}") from None
    protocol = (training_config or TrainingConfig()).protocol
    if protocol.k != config.k:
        raise BenchmarkError(f"k: the benchmark ranks {config.k} items but the training protocol {protocol.k}")
    split = protocol_split(dataset, protocol.min_rating, protocol.test_share)
    tuning_started = time.perf_counter()
    tunings = tune_peers(split, config)
    tuning_s = round(time.perf_counter() - tuning_started, 1)
    per_seed = []
    labels = config.labels()
    for seed in config.seeds:
        say(f"quality: seed {seed} on {dataset.name}")
        per_seed.append(evaluate_seed(dataset, seed, config, training_config, tunings, split))
        ndcg = per_seed[-1]["metrics"]
        say("quality (NDCG@k unseen / positives-only): "
            + ", ".join(f"{m} {ndcg[m][f'unseen_ndcg_at_{config.k}']:.4f} / {ndcg[m][f'ndcg_at_{config.k}']:.4f}"
                        for m in labels))
    two_stage = (training_config or TrainingConfig()).als
    result = {
        "benchmark": "quality",
        "started_at": started_at,
        "config": {**{name: value for name, value in asdict(config).items() if name != "grids"},
                   "grids": {key: config.grid(key) for key in config.peers}},
        "training_config": (training_config.model_dump(mode="json") if training_config is not None else "defaults"),
        "dataset": {"name": dataset.name, "interactions": dataset.interactions.height, "items": dataset.items.height,
                    "users": dataset.users.height},
        "protocol": "DESIGN.md: positives rating >= 4; per user the last ceil(0.2 n) positives by time to test; "
                    "full ranking over all items; unseen_* metrics exclude every item the user rated (any value) "
                    "before the first test positive (served reality), the unprefixed ones only the train positives "
                    "(published protocol); metrics over users with a test item; peers tuned on a validation split "
                    "carved from train the same way (last 20 % of each user's train positives), never on test",
        "machine": machine,
        "tuning": tunings,
        "tuning_s": tuning_s,
        "two_stage_config": {"retrieval": "als", "factors": two_stage.factors, "regularization": two_stage.regularization,
                             "alpha": two_stage.alpha, "iterations": two_stage.iterations},
        "per_seed": per_seed,
        "summary": aggregate(per_seed, config.k, config.surfaces),
    }
    result["duration_s"] = round(time.perf_counter() - started, 1)
    path = out_dir / "quality.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    (out_dir / "quality.md").write_text(markdown(result))
    if config.mlflow:
        result["mlflow_run_id"] = log_to_mlflow(result, path)
        path.write_text(json.dumps(result, indent=2, default=str))
    return result
