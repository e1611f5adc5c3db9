"""The benchmarks work end to end on tiny sizes: each writes its JSON, the report gets its plots.

Speed is never asserted here (a slow machine must not fail the suite); only that every benchmark
runs through the real code (training CLI, in-process pipeline, `recsys serve` over HTTP, the audit)
and produces well-formed results. A 2,000-item catalog, 50 HTTP requests per level, one seed; the
real-path section for 1 s of wrk at concurrency 1 against that model and a one-worker floor.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from benchmarks.cli import app, parse_sizes
from benchmarks.compliance import ComplianceConfig
from benchmarks.compliance import run as run_compliance
from benchmarks.latency import (
    STAGES,
    BenchmarkError,
    LatencyConfig,
    RealPathConfig,
    ensure_model,
    histogram_quantile,
    parse_stage_histograms,
    stage_stats_between,
)
from benchmarks.latency import run as run_latency
from benchmarks.memory import MemoryConfig
from benchmarks.memory import run as run_memory
from benchmarks.loadgen import LoadConfig, LoadError, WrkMissing, cdf_points, check_loopback, summarize_ms, wrk_script
from benchmarks.quality import QualityConfig
from benchmarks.quality import run as run_quality
from benchmarks.report import ReportError, build

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

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


@pytest.fixture(scope="module")
def wrk_installed() -> str:
    """wrk, installed by scripts/bench-deps.sh when missing; the real-path test is skipped only when
    it cannot be installed here."""
    found = shutil.which("wrk")
    if not found:
        result = subprocess.run(["bash", str(ROOT / "scripts" / "bench-deps.sh")], capture_output=True, text=True,
                                timeout=600)
        found = shutil.which("wrk")
        if not found:
            pytest.skip(f"wrk is not installed and scripts/bench-deps.sh could not install it: "
                        f"{(result.stderr or result.stdout).strip()[-300:]}")
    return found


def test_real_path_against_the_floor(tiny_model, wrk_installed, tmp_path):
    """The real-path section end to end, cheaply: the cached tiny model under `recsys serve` (fresh
    state; one worker: a second one doubles the start-up on 2 cores, and the supervisor has its own
    tests), 1 s of wrk at concurrency 1 over its real users, and a one-worker floor."""
    config = RealPathConfig(model_env=tiny_model.env, workers=1, duration_s=1, warmup_s=0, concurrency=(1,),
                            floor_workers=(1,), wrk=wrk_installed)
    run_dir = tmp_path / "run"
    run_latency(LatencyConfig(sizes=(), real_path=config), run_dir, tmp_path / "cache")
    saved = json.loads((run_dir / "latency.json").read_text())
    assert saved["sizes"] == [] and saved["config"]["real_path"]["concurrency"] == [1]
    real = saved["real_path"]
    assert real["model"]["n_users"] > 0 and real["model"]["version"]
    assert real["server"]["workers"] == 1 and "fresh" in real["server"]["state"]
    assert real["load"]["request"] == {"method": "POST", "path": "/v1/recommendations", "surface": "feed", "page": 0,
                                       "k": 10, "users": real["model"]["n_users"],
                                       "order": "every user with a history, round-robin"}
    (level,) = real["levels"]
    assert level["concurrency"] == 1 and level["ok"] > 0 and level["lists_per_s"] > 0
    # Synthetic minors may be refused (curfew): every completed request is a 2xx or counted as non-2xx.
    assert level["ok"] + level["non_2xx"] == level["requests"] == sum(level["statuses"].values())
    latency = level["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] + 1e-3
    assert len(level["cdf_ms"]) == 101 and level["cdf_ms"] == sorted(level["cdf_ms"])
    stages = level["server_stages"]
    assert set(STAGES) <= set(stages)  # the gate stage included
    for stage in STAGES:
        assert stages[stage]["count"] >= level["ok"] and stages[stage]["mean_ms"] > 0 and stages[stage]["p99_ms"] > 0
    assert level["cpu"]["server_cpu_ms_per_response"] > 0
    assert set(level["cpu"]["worker_cpu_ms_per_response"]) == {"event_loop_thread", "other_threads"}
    (floor,) = real["floor"]["servers"]
    assert floor["workers"] == 1 and floor["levels"][0]["requests_per_s"] > 0 and floor["levels"][0]["non_2xx"] == 0
    assert real["floor"]["body_bytes"] == real["response_bytes"] > 100
    (ratio,) = real["ratios"]
    assert ratio["throughput"] == pytest.approx(level["lists_per_s"] / floor["levels"][0]["requests_per_s"], rel=1e-3)
    # The report of a real-path-only run: its section and plot, no synthetic sections.
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    md = (run_dir / "report.md").read_text()
    assert "## Real path" in md and "floor (1 worker)" in md and "## Goals" not in md
    if (run_dir / "real_path.png").exists():
        assert "(real_path.png)" in md


def test_quality_rejects_unknown_or_empty_peers_in_one_line(tmp_path):
    for peers, named in (("als,nope", "nope"), (" , ", "--peers")):
        result = CliRunner().invoke(app, ["quality", "--peers", peers, "--no-mlflow", "--out", str(tmp_path / "q")])
        assert result.exit_code == 2 and named in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_real_path_without_wrk_fails_with_one_line_naming_the_script(tmp_path, monkeypatch):
    with pytest.raises(WrkMissing, match="scripts/bench-deps.sh"):
        run_latency(LatencyConfig(sizes=(), real_path=RealPathConfig(wrk="/nonexistent/wrk")), tmp_path, tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no wrk on PATH: the CLI says which script installs it
    result = CliRunner().invoke(app, ["latency", "--real-path-only", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "scripts/bench-deps.sh" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    result = CliRunner().invoke(app, ["latency", "--real-path-only", "--no-real-path", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--real-path-only" in result.output


def test_stage_histograms_from_metrics_deltas():
    def exposition(counts: dict[str, list[int]], sums: dict[str, float]) -> str:
        bounds = ["0.001", "0.0025", "0.005", "+Inf"]
        lines = []
        for stage, cumulative in counts.items():
            lines += [f'recsys_stage_seconds_bucket{{le="{le}",stage="{stage}"}} {n}.0' for le, n in zip(bounds, cumulative)]
            lines += [f'recsys_stage_seconds_count{{stage="{stage}"}} {cumulative[-1]}.0',
                      f'recsys_stage_seconds_sum{{stage="{stage}"}} {sums[stage]}']
        return "\n".join(["# HELP recsys_stage_seconds Time spent", *lines, 'recsys_requests_total{route="x"} 3.0'])

    before = parse_stage_histograms(exposition({"gate": [10, 10, 10, 10], "log": [0, 5, 5, 5]}, {"gate": 0.002, "log": 0.01}))
    after = parse_stage_histograms(exposition({"gate": [110, 110, 110, 110], "log": [0, 5, 103, 105]},
                                              {"gate": 0.022, "log": 0.41}))
    stats = stage_stats_between(before, after)
    assert stats["gate"]["count"] == 100 and stats["gate"]["mean_ms"] == pytest.approx(0.2)
    assert stats["gate"]["p99_bucket_ms"] == [0.0, 1.0] and 0 < stats["gate"]["p99_ms"] <= 1.0
    # log: 98 of 100 new observations in (2.5, 5] ms, 2 above 5 ms: p99 is the highest finite bound.
    assert stats["log"]["count"] == 100 and stats["log"]["mean_ms"] == pytest.approx(4.0)
    assert stats["log"]["p99_ms"] == 5.0 and stats["log"]["p99_bucket_ms"] == [5.0, None]
    assert histogram_quantile(0.5, {0.001: 0.0, float("inf"): 0.0}) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=4, max_size=4), st.floats(0.01, 0.999), st.floats(0.01, 0.999))
def test_histogram_quantile_is_monotone_and_inside_its_bucket(per_bucket, q1, q2):
    bounds = [0.001, 0.0025, 0.005, float("inf")]
    cumulative = dict(zip(bounds, np.cumsum(per_bucket).tolist()))
    if cumulative[float("inf")] == 0:
        assert histogram_quantile(q1, cumulative) is None
        return
    low, high = sorted((q1, q2))
    assert histogram_quantile(low, cumulative) <= histogram_quantile(high, cumulative) + 1e-12
    assert 0.0 <= histogram_quantile(high, cumulative) <= 0.005


def test_wrk_script_posts_every_body_round_robin():
    bodies = [{"user_id": f"u{i}", "surface": "feed", "page": 0, "k": 10} for i in range(3)] + [{"user_id": "a]]b"}]
    script = wrk_script("/v1/recommendations", bodies, threads=2)
    assert script.count('"surface":"feed"') == 3 and "a]]b" in script and "[=[" in script
    assert "local THREADS = 2" in script and "function done(summary, latency, requests)" in script


def test_quality_protocol_models_policy_and_mlflow(tiny_model, bench_dirs, mlflow_env):
    from training.config import TrainingConfig

    config = QualityConfig(dataset=str(tiny_model.directory / "dataset"), seeds=(0,), quick=True)
    result = run_quality(config, bench_dirs["run"], training_config=TrainingConfig.model_validate(TINY_TRAINING))
    saved = json.loads((bench_dirs["run"] / "quality.json").read_text())
    models = saved["summary"]["models"]
    assert list(models) == ["MostPopular", "RecencyPopular", "ItemKNN", "RP3beta", "EASE", "ALS", "SASRec+", "two-stage",
                            "two-stage + policy", "two-stage + policy (feed)"]
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
    assert "anatomy.front_screen.added_per_list" in run.data.metrics


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
def test_memory_reports_rss_and_pss_per_worker(bench_dirs):
    """Two workers serving the (cached or trained) tiny model: each has RSS and PSS, and the pages of
    the mapped bundle both workers touch are shared (PSS below RSS)."""
    config = MemoryConfig(sizes=(2_000,), users=300, warm_requests=20, concurrency=2)
    result = run_memory(config, bench_dirs["run"], bench_dirs["cache"])
    size = result["sizes"][0]
    assert len(size["workers"]) == 2 and size["warm_load"]["ok"] == 20
    for worker in size["workers"]:
        assert 0 < worker["pss_mb"] <= worker["rss_mb"]
        assert 0 < worker["bundle_files"]["pss_mb"] < worker["bundle_files"]["rss_mb"]
    assert size["total_pss_mb"] == pytest.approx(sum(w["pss_mb"] for w in size["workers"]), abs=0.2)
    written = json.loads((bench_dirs["run"] / "memory-mmap.json").read_text())
    assert written["sizes"][0]["n_items"] == 2_000 and "met" in written["bar"]
    with pytest.raises(BenchmarkError, match="--sizes"):
        MemoryConfig(sizes=(10,))
    result = CliRunner().invoke(app, ["memory", "--label", "a/b", "--out", str(bench_dirs["run"])])
    assert result.exit_code == 2 and "--label" in result.output


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
