"""The benchmarks work end to end on tiny sizes: each writes its JSON, the report gets its plots.

Speed is never asserted here (a slow machine must not fail the suite); only that every benchmark
runs through the real code (training CLI, in-process pipeline, `recsys serve` over HTTP, the audit)
and produces well-formed results. A 2,000-item catalog, 50 HTTP requests per level, one seed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from benchmarks.cli import app, parse_sizes
from benchmarks.compliance import ComplianceConfig
from benchmarks.compliance import run as run_compliance
from benchmarks.latency import BenchmarkError, LatencyConfig, ensure_model
from benchmarks.latency import run as run_latency
from benchmarks.loadgen import LoadConfig, LoadError, cdf_points, check_loopback, summarize_ms
from benchmarks.quality import QualityConfig
from benchmarks.quality import run as run_quality
from benchmarks.report import ReportError, build

pytestmark = pytest.mark.e2e

TINY = LatencyConfig(sizes=(2_000,), users=300, requests=50, inprocess_requests=100, concurrency=(1, 8),
                     index_queries=30, max_duration_s=60.0)
TINY_TRAINING = {"als": {"factors": 16, "iterations": 2},
                 "ranker": {"kind": "mlp", "params": {"hidden": [16], "epochs": 1, "patience": 1}}, "baselines": []}


@pytest.fixture(scope="module")
def bench_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return {"cache": root / "cache", "run": root / "run"}


@pytest.fixture(scope="module")
def mlflow_env(tmp_path_factory):
    """Quality logs to MLflow: point it at a temporary store for this module."""
    from recsys.config import environment

    root = tmp_path_factory.mktemp("mlflow")
    values = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "RECSYS_MLFLOW_ARTIFACTS_DIR": str(root / "artifacts")}
    with environment(values):
        yield values


@pytest.fixture(scope="module")
def latency_result(bench_dirs):
    return run_latency(TINY, bench_dirs["run"], bench_dirs["cache"])


@pytest.fixture(scope="module")
def tiny_model(latency_result, bench_dirs):
    """The model the latency run trained and cached (found again in the cache, not retrained)."""
    model = ensure_model(2_000, 300, TINY, bench_dirs["cache"])
    assert model.reused
    return model


def test_latency_writes_stages_indexes_http_and_goals(latency_result, bench_dirs):
    saved = json.loads((bench_dirs["run"] / "latency.json").read_text())
    assert saved["benchmark"] == "latency" and len(saved["sizes"]) == 1
    size = saved["sizes"][0]
    assert size["n_items"] == 2_000
    stages = size["in_process"]["stages_ms"]
    assert set(stages) == {"gate", "hydrate", "sources", "filters", "ranker", "policy", "explain", "log"}
    assert all(stages[s]["mean"] > 0 for s in stages)
    assert size["in_process"]["total_ms"]["p50"] <= size["in_process"]["total_ms"]["p99"]
    on_off = size["in_process"]["policy_on_off"]
    assert on_off["on_ms"]["mean"] > 0 and on_off["off_ms"]["mean"] > 0
    assert math.isclose(on_off["overhead_mean"], on_off["on_ms"]["mean"] / on_off["off_ms"]["mean"] - 1, abs_tol=1e-3)
    kinds = {entry["kind"]: entry for entry in size["indexes"]}
    assert set(kinds) == {"flat", "hnsw", "ivf"}
    assert kinds["flat"]["recall_at_k"] == 1.0  # exact search against itself
    assert all(0.0 <= e["recall_at_k"] <= 1.0 for e in kinds.values())
    http = size["http"]
    assert [level["concurrency"] for level in http["levels"]] == [1, 8]
    for level in http["levels"]:
        assert level["statuses"] == {"200": 50}, level
        assert level["ok"] == 50 and level["throughput_rps"] > 0
        assert len(level["cdf_ms"]) > 10 and level["cdf_ms"] == sorted(level["cdf_ms"])
    assert http["server_peak_rss_mb"]["processes"] >= 3  # the supervisor and two workers
    assert http["readyz_ms"]["p50"] > 0
    # 1M items was not measured: every goal says so instead of passing or failing.
    assert saved["goals"] and all(goal["met"] is None for goal in saved["goals"])


def test_quality_protocol_models_policy_and_mlflow(tiny_model, bench_dirs, mlflow_env):
    from training.config import TrainingConfig

    config = QualityConfig(dataset=str(tiny_model.directory / "dataset"), seeds=(0,))
    result = run_quality(config, bench_dirs["run"], training_config=TrainingConfig.model_validate(TINY_TRAINING))
    saved = json.loads((bench_dirs["run"] / "quality.json").read_text())
    models = saved["summary"]["models"]
    assert list(models) == ["MostPopular", "ItemKNN", "EASE", "ALS", "two-stage", "two-stage + policy"]
    for values in models.values():
        assert 0.0 <= values["ndcg_at_10"]["mean"] <= 1.0 and 0.0 <= values["recall_at_10"]["mean"] <= 1.0
        assert 0.0 < values["catalog_coverage_at_10"]["mean"] <= 1.0
    seed = saved["per_seed"][0]
    # The benchmark's two-stage lists are the ones the training pipeline evaluates.
    assert math.isclose(seed["metrics"]["two-stage"]["ndcg_at_10"], seed["pipeline_two_stage"]["ndcg_at_10"], rel_tol=1e-9)
    policy, plain = models["two-stage + policy"], models["two-stage"]
    assert policy["dispersal_violations_per_list"]["mean"] <= plain["dispersal_violations_per_list"]["mean"]
    assert policy["content_duplicates_per_list"]["mean"] == 0.0
    price = saved["summary"]["price_of_compliance"]["ndcg_delta"]["mean"]
    assert math.isclose(price, policy["ndcg_at_10"]["mean"] - plain["ndcg_at_10"]["mean"], abs_tol=1e-12)

    import mlflow

    run = mlflow.get_run(result["mlflow_run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "benchmarks"
    assert "two_stage_plus_policy.ndcg_at_10.mean" in run.data.metrics


def test_compliance_audits_a_fresh_server(tiny_model, bench_dirs):
    users = pl.read_parquet(tiny_model.directory / "dataset" / "users.parquet")
    adults = users.filter(pl.col("age") >= 18).get_column("user_id").head(4).to_list()
    result = run_compliance(ComplianceConfig(lists=6, pages=2, user_ids=tuple(adults)), bench_dirs["run"],
                            server_env=tiny_model.env)
    saved = json.loads((bench_dirs["run"] / "compliance.json").read_text())
    assert saved["passed"] == result["passed"]
    checks = saved["audit"]["checks"]
    assert len(checks) >= 10 and all(c["article"].startswith("Art.") for c in checks)
    assert saved["audit"]["totals"]["lists_served"] > 0
    assert saved["server"]["started_here"] and saved["server"]["peak_rss_mb"]["processes"] >= 3
    assert "admin_token" not in saved["config"]


def test_report_embeds_every_plot(latency_result, bench_dirs):
    pytest.importorskip("matplotlib")
    run_dir = bench_dirs["run"]
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    md = (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    for png in ("latency_cdf.png", "stage_breakdown.png", "latency_vs_size.png", "policy_overhead.png", "index_tradeoff.png"):
        assert (run_dir / png).stat().st_size > 5_000
        assert f"({png})" in md
    assert "## Latency" in md and "Goals (reported, not asserted)" in md
    if (run_dir / "quality.json").exists():
        assert "## Quality" in md and (run_dir / "quality_accuracy.png").exists()
    if (run_dir / "compliance.json").exists():
        assert "## Compliance audit" in md
    assert page.count("data:image/png;base64,") == md.count("![")
    assert "<table>" in page and 'src="quality' not in page  # self-contained: no file links


# -- bad input: one-line errors naming the flag ----------------------------------------------------
def test_cli_rejects_bad_sizes_and_missing_run_dir(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["latency", "--sizes", "1x", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--sizes" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="no latency.json"):
        build(empty)


def test_configs_and_loopback_guard_name_the_bad_input():
    with pytest.raises(BenchmarkError, match="--sizes"):
        LatencyConfig(sizes=(10,))
    with pytest.raises(BenchmarkError, match="--index-kinds"):
        LatencyConfig(index_kinds=("annoy",))
    with pytest.raises(BenchmarkError, match="--seeds"):
        QualityConfig(seeds=())
    with pytest.raises(LoadError, match="--url"):
        check_loopback("http://10.1.2.3:8000")
    with pytest.raises(LoadError, match="--concurrency"):
        LoadConfig(concurrency=0)
    assert check_loopback("http://127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_sizes("100k, 1M,2000") == (100_000, 1_000_000, 2_000)


# -- properties of the latency summaries ------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=1e4, allow_nan=False), min_size=1, max_size=400))
def test_percentiles_are_ordered_and_the_cdf_rises(samples):
    values = np.asarray(samples)
    summary = summarize_ms(values)
    tol = 1e-3  # values are rounded to the microsecond
    assert summary["p50"] <= summary["p95"] + tol <= summary["p99"] + 2 * tol <= summary["p99_9"] + 3 * tol
    assert summary["p99_9"] <= summary["max"] + tol and values.min() - tol <= summary["mean"] <= values.max() + tol
    cdf = cdf_points(values, 50)
    assert len(cdf) == 50 and cdf == sorted(cdf)
    assert math.isclose(cdf[0], values.min(), abs_tol=tol) and math.isclose(cdf[-1], values.max(), abs_tol=tol)


@given(st.lists(st.tuples(st.integers(1, 999), st.sampled_from(["", "k", "M"])), min_size=1, max_size=5))
def test_parse_sizes_reads_suffixes(parts):
    text = ",".join(f"{n}{suffix}" for n, suffix in parts)
    assert parse_sizes(text) == tuple(n * {"": 1, "k": 1_000, "M": 1_000_000}[s] for n, s in parts)
