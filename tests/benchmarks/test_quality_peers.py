"""The quality benchmark with its peers: every peer and both exclusion rules in quality.json, each
peer's choice from its own grid on validation, the Markdown table, and the aggregate's arithmetic.

One tiny synthetic catalog, `quick=True` grids, two seeds, no MLflow (the smoke test covers it).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from benchmarks.latency import BenchmarkError
from benchmarks.quality import (
    GRIDS,
    PEER_LABELS,
    QUICK_GRIDS,
    SERVED_HOME,
    TWO_STAGE,
    NO_RULES,
    RULE_SWITCHES,
    QualityConfig,
    aggregate,
    rule_prices,
    run,
    served_label,
    slug,
    tables,
)
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.evaluation import RULE_PREFIX, RULES
from recsys.retrieval.peers import PEER_KEYS

pytestmark = pytest.mark.e2e  # trains the two-stage model through the real pipeline

TINY_TRAINING = {"als": {"factors": 16, "iterations": 2},
                 "ranker": {"kind": "mlp", "params": {"hidden": [16], "epochs": 1, "patience": 1}}, "baselines": []}
METRICS = ("ndcg_at_10", "recall_at_10", "catalog_coverage_at_10", "genres_at_10", "dispersal_violations_per_list",
           "content_duplicates_per_list")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from training.config import TrainingConfig

    root = tmp_path_factory.mktemp("quality-peers")
    data = SyntheticConfig(n_users=150, n_items=400, interactions_per_user=20, seed=3, mainstream_share=0.02)
    generate(data).save(root / "data")
    config = QualityConfig(dataset=str(root / "data"), seeds=(0, 1), quick=True, mlflow=False)
    run(config, root / "run", training_config=TrainingConfig.model_validate(TINY_TRAINING))
    return json.loads((root / "run" / "quality.json").read_text()), (root / "run" / "quality.md").read_text()


def test_every_peer_the_two_stage_model_and_both_surfaces_under_both_rules(result):
    saved, _ = result
    expected = [PEER_LABELS[key] for key in PEER_KEYS] + [TWO_STAGE, SERVED_HOME, served_label("feed")]
    assert list(saved["summary"]["models"]) == expected
    for seed in saved["per_seed"]:
        assert list(seed["metrics"]) == expected
        for label, row in seed["metrics"].items():
            for rule in RULES:
                for metric in METRICS:
                    value = row[RULE_PREFIX[rule] + metric]
                    assert np.isfinite(value), (label, rule, metric)
                assert 0.0 <= row[RULE_PREFIX[rule] + "ndcg_at_10"] <= 1.0
    served = saved["summary"]["models"][SERVED_HOME]
    assert served["unseen_content_duplicates_per_list"]["mean"] == 0.0
    assert served["unseen_dispersal_violations_per_list"]["mean"] == 0.0


def test_each_peer_is_tuned_once_on_validation_from_its_own_grid(result):
    saved, _ = result
    assert list(saved["tuning"]) == list(PEER_KEYS)
    for key, tuning in saved["tuning"].items():
        grid = QUICK_GRIDS[key]
        assert len(tuning["trace"]) == len(grid) and tuning["seed"] == 0
        chosen = {name: value for name, value in tuning["chosen"].items() if not (key == "sasrec" and name == "epochs")}
        assert any(chosen == {n: v for n, v in point.items() if not (key == "sasrec" and n == "epochs")} for point in grid)
        best = max(point["unseen_ndcg_at_10"] for point in tuning["trace"])
        assert tuning["validation"]["unseen_ndcg_at_10"] == pytest.approx(best, abs=1e-5)
    assert saved["config"]["grids"] == {key: QUICK_GRIDS[key] for key in PEER_KEYS}


def test_seeded_peers_vary_and_the_spread_is_the_sample_sd(result):
    saved, _ = result
    for label, values in saved["summary"]["models"].items():
        series = [s["metrics"][label]["unseen_ndcg_at_10"] for s in saved["per_seed"]]
        stats = values["unseen_ndcg_at_10"]
        assert stats["mean"] == pytest.approx(np.mean(series)) and stats["std"] == pytest.approx(np.std(series, ddof=1))
    deterministic = ("MostPopular", "RecencyPopular", "ItemKNN", "RP3beta", "EASE")
    assert all(saved["summary"]["models"][m]["ndcg_at_10"]["std"] == 0.0 for m in deterministic)


def test_markdown_has_both_rule_tables_and_the_chosen_settings(result):
    saved, md = result
    assert "## Served reality (primary)" in md and "## Positives only (published protocol)" in md
    assert "## Hyper-parameters chosen on the validation split" in md
    for label in saved["summary"]["models"]:
        assert md.count(f"| {label} |") >= 2
    assert re.search(r"\| EASE \| regularization \d", md)
    assert "Price of compliance on home" in md and "Price of compliance on feed" in md
    titles = [title for title, _, _ in tables(saved)]
    assert len(titles) == 3


def test_price_of_compliance_is_per_surface(result):
    saved, _ = result
    price = saved["summary"]["price_of_compliance"]
    assert price["surface"] == "home" and set(price["by_surface"]) == {"home", "feed"}
    for surface, values in price["by_surface"].items():
        delta = np.mean([s["metrics"][served_label(surface)]["unseen_ndcg_at_10"]
                         - s["metrics"][TWO_STAGE]["unseen_ndcg_at_10"] for s in saved["per_seed"]])
        assert math.isclose(values["unseen_ndcg_delta"]["mean"], delta, abs_tol=1e-12)
    assert price["ndcg_delta"] == price["by_surface"]["home"]["ndcg_delta"]


def test_each_rule_has_its_price_on_the_first_surface(result):
    saved, md = result
    prices = saved["summary"]["rule_prices"]
    assert list(prices) == [*RULE_SWITCHES, NO_RULES]
    for name, values in prices.items():
        price = np.mean([s["rule_off_ndcg"][name] - s["metrics"][SERVED_HOME]["unseen_ndcg_at_10"]
                         for s in saved["per_seed"]])
        assert math.isclose(values["price"]["mean"], price, abs_tol=1e-12)
    assert "## Price of each rule on home" in md and "| front_screen |" in md


def test_rule_prices_on_hand_made_seeds():
    per_seed = [{"metrics": {TWO_STAGE: {"unseen_ndcg_at_10": 0.2, "ndcg_at_10": 0.15},
                             SERVED_HOME: {"unseen_ndcg_at_10": 0.18, "ndcg_at_10": 0.14}},
                 "rule_off_ndcg": {"front_screen": 0.19 + d, NO_RULES: 0.2}} for d in (0.0, 0.002)]
    prices = rule_prices(per_seed, 10, SERVED_HOME)
    assert prices["front_screen"]["price"]["mean"] == pytest.approx(0.011)
    assert prices["front_screen"]["price_relative"]["mean"] == pytest.approx(0.055)
    assert prices[NO_RULES]["price"]["mean"] == pytest.approx(0.02)
    assert aggregate(per_seed, 10)["rule_prices"] == prices


def test_aggregate_on_hand_made_seeds():
    row = {"ndcg_at_10": 0.1, "unseen_ndcg_at_10": 0.2}
    per_seed = [{"metrics": {TWO_STAGE: row, SERVED_HOME: {"ndcg_at_10": 0.1 + d, "unseen_ndcg_at_10": 0.2 + d}}}
                for d in (0.0, 0.02)]
    summary = aggregate(per_seed, 10)
    assert summary["models"][SERVED_HOME]["ndcg_at_10"]["mean"] == pytest.approx(0.11)
    assert summary["models"][SERVED_HOME]["ndcg_at_10"]["std"] == pytest.approx(np.std([0.1, 0.12], ddof=1))
    assert summary["price_of_compliance"]["unseen_ndcg_delta"]["mean"] == pytest.approx(0.01)


def test_mlflow_names_are_valid_for_every_label():
    labels = [*PEER_LABELS.values(), TWO_STAGE, SERVED_HOME, served_label("feed")]
    slugs = [slug(label) for label in labels]
    assert slug(SERVED_HOME) == "two_stage_plus_policy" and slug("SASRec+") == "sasrec_plus"
    assert len(set(slugs)) == len(slugs) and all(re.fullmatch(r"[a-z0-9_]+", s) for s in slugs)


def test_config_rejects_unknown_peers_and_empty_grids():
    with pytest.raises(BenchmarkError, match="unknown"):
        QualityConfig(peers=("popular", "bpr"))
    with pytest.raises(BenchmarkError, match="grids"):
        QualityConfig(grids={"ease": []})
    assert QualityConfig(grids={"ease": [{"regularization": 1.0}]}).grid("ease") == [{"regularization": 1.0}]
    assert QualityConfig().grid("rp3beta") == GRIDS["rp3beta"]
    assert QualityConfig(quick=True).grid("als") == QUICK_GRIDS["als"]


def test_the_price_anatomy_of_each_rule_and_of_the_served_page(result):
    from benchmarks.price_anatomy import PICKERS
    from benchmarks.quality import ALL_RULES

    saved, md = result
    anatomy = saved["summary"]["anatomy"]
    assert list(anatomy["rules"]) == [*RULE_SWITCHES, ALL_RULES]
    for seed in saved["per_seed"]:
        rows = seed["anatomy"]["rules"]
        # The served page is the one the benchmark scored as the served first page of home.
        assert rows[ALL_RULES]["ndcg"] == pytest.approx(seed["metrics"][SERVED_HOME]["unseen_ndcg_at_10"])
        for row in rows.values():
            assert row["dropped_per_list"] == pytest.approx(row["added_per_list"])  # full pages of k
    assert set(anatomy["editorial_picks"]["pick_hit_rate"]) == set(PICKERS)
    assert "## Where the price goes" in md and "| oracle (knows the held-out films) |" in md
