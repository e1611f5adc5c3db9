"""Latency benchmark: how fast the real request path is on synthetic catalogs of growing size.

Per catalog size: a model trained by the real pipeline with cheap settings (cached under
benchmarks/results/cache/), then
- in process, on one core: per-stage timings of the route's path (hydrate ► sources ► filters ►
  ranker ► policy ► explain ► log), and the pipeline with policies on vs off, interleaved;
- the Faiss index choice: exact vs HNSW vs IVF, recall@K against exact search and search latency;
- over HTTP: a real `recsys serve` (2 workers, 127.0.0.1) under concurrency 1, 8 and 32 for a fixed
  request count: throughput, p50/p95/p99/p99.9 and peak RSS of the server.
Then the real path (`real_path` section; `recsys bench latency --real-path-only` runs only it): the
registered model (MovieLens-100K by `make serve`) or a given model URI, served by `recsys serve
--workers 2` with fresh state, driven over HTTP by wrk at concurrency 1 and 8 for a fixed duration
with every real user of the model round-robin (feed, k=10), with the server's own per-stage means
and p99 from /metrics; and, in the same run, the floor: a bare FastAPI app returning a fixed body of
a real response's size, served the same way (1 and 2 workers), under the same wrk settings.
Goals are reported against, never asserted: a slow machine still gets its report.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from benchmarks.loadgen import LoadConfig, find_wrk, run_load, run_wrk, summarize_ms, wrk_script, wrk_version
from benchmarks.machine import self_peak_rss_mb
from benchmarks.server import FLOOR_BODY_ENV, ServerProcess, floor_command, recsys_executable

STAGES = ("gate", "hydrate", "sources", "filters", "ranker", "policy", "explain", "log")
DEFAULT_SIZES = (100_000, 1_000_000)
GOAL_SIZE = 1_000_000
RECOMMENDATIONS_PATH = "/v1/recommendations"
# Cheap training: it is a latency benchmark, not a quality one (few ALS iterations, small
# factors, a short ranker run, no dense baselines, which would score every item for every user).
CHEAP_TRAINING = {
    "als": {"factors": 32, "iterations": 3},
    "ranker": {"kind": "mlp", "params": {"hidden": [32, 16], "epochs": 2, "patience": 1}},
    "baselines": [],
    # The second candidate source, small: a short window, 32 dims, one block, a sampled softmax
    # (the full softmax over a million items does not fit a CPU), two epochs. Its request-time cost
    # (encoding the sequence, a second Faiss search, more candidates to rank) is what is measured.
    "sequential": {"n_candidates": 100,
                   "sasrec": {"max_len": 20, "hidden": 32, "blocks": 1, "epochs": 2, "negatives": 512, "batch_size": 256}},
}


class BenchmarkError(RuntimeError):
    """A benchmark cannot run (bad option, training or server failure); the message says which."""


@dataclass(frozen=True)
class RealPathConfig:
    """The real-path section: the served model, its server and the wrk load."""

    model_uri: str | None = None  # None: models:/<name>@<alias> of the configured MLflow store
    database_url: str | None = None  # None: a fresh SQLite file; else this database, used as it is
    workers: int = 2
    concurrency: tuple[int, ...] = (1, 8)
    duration_s: float = 10.0  # per wrk run
    warmup_s: float = 3.0  # untimed wrk run per server before its first timed one
    threads: int = 1  # wrk threads
    floor_workers: tuple[int, ...] = (1, 2)  # () skips the floor
    surface: str = "feed"
    k: int = 10
    wrk: str = "wrk"  # the executable (a name on PATH or a path)
    timeout_s: float = 10.0  # wrk's per-request timeout
    profile_s: float = 0.0  # > 0: after the timed runs, py-spy records each worker under wrk c=max for this long
    model_env: dict[str, str] = field(default_factory=dict)  # e.g. another MLflow store (MLFLOW_*, RECSYS_*)

    def __post_init__(self) -> None:
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise BenchmarkError(f"--wrk-concurrency: levels must be >= 1, got {list(self.concurrency)}")
        if any(c < self.threads for c in self.concurrency):
            raise BenchmarkError(f"--wrk-concurrency: wrk needs at least one connection per thread ({self.threads})")
        if not self.duration_s >= 1 or self.warmup_s < 0:
            raise BenchmarkError(f"--wrk-duration: at least 1 second, got {self.duration_s}")
        if self.workers < 1 or self.threads < 1 or any(w < 1 for w in self.floor_workers):
            raise BenchmarkError("--workers, --wrk-threads and --floor-workers must be >= 1")
        if self.k < 1:
            raise BenchmarkError(f"k must be >= 1, got {self.k}")


@dataclass(frozen=True)
class LatencyConfig:
    """Sizes, request counts and limits of one latency run."""

    sizes: tuple[int, ...] = DEFAULT_SIZES  # () with real_path set: the real path only
    users: int | None = None  # users per synthetic catalog; None: n_items // 50 within 2,000..20,000
    interactions_per_user: float = 20.0
    seed: int = 0
    requests: int = 2_000  # timed HTTP requests per concurrency level
    concurrency: tuple[int, ...] = (1, 8, 32)
    workers: int = 2
    inprocess_requests: int = 2_000  # timed in-process requests (and on/off pairs)
    index_kinds: tuple[str, ...] = ("flat", "hnsw", "ivf")
    index_queries: int = 300  # single-query searches timed per index kind
    hnsw_max_items: int = 1_000_000  # HNSW build is skipped above this (it takes long on 2 cores)
    max_duration_s: float = 300.0  # per HTTP load level
    http: bool = True
    http_max_items: int | None = None  # HTTP only for catalogs up to this size
    training: dict = field(default_factory=lambda: json.loads(json.dumps(CHEAP_TRAINING)))
    real_path: RealPathConfig | None = None  # the real-path section (None: not run)

    def __post_init__(self) -> None:
        if not self.sizes and self.real_path is None:
            raise BenchmarkError("--sizes: give at least one size, e.g. --sizes 100k,1M (or run the real path)")
        if any(not isinstance(s, int) or s < 100 for s in self.sizes):
            raise BenchmarkError(f"--sizes: item counts must be integers >= 100, got {list(self.sizes)}")
        if self.users is not None and self.users < 10:
            raise BenchmarkError(f"--users: need at least 10 users, got {self.users}")
        for name in ("requests", "inprocess_requests", "index_queries", "workers"):
            if getattr(self, name) < 1:
                raise BenchmarkError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise BenchmarkError(f"--concurrency: levels must be >= 1, got {list(self.concurrency)}")
        unknown = [k for k in self.index_kinds if k not in ("flat", "hnsw", "ivf")]
        if unknown:
            raise BenchmarkError(f"--index-kinds: unknown {unknown}; allowed: flat, hnsw, ivf")

    def users_for(self, n_items: int) -> int:
        return self.users if self.users is not None else int(min(20_000, max(2_000, n_items // 50)))


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# The model for one catalog size: generated, trained by `recsys train`, cached
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CachedModel:
    """A synthetic catalog and the MLflow store holding the model trained on it."""

    key: str
    directory: Path
    n_items: int
    n_users: int
    env: dict[str, str]  # what `recsys serve` and `load_bundle` need to find the model
    train_seconds: float
    generate_seconds: float
    reused: bool


def model_env(directory: Path) -> dict[str, str]:
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    return {
        "MLFLOW_TRACKING_URI": uri,
        "RECSYS_MLFLOW_TRACKING_URI": uri,
        "RECSYS_MLFLOW_ARTIFACTS_DIR": str(directory / "mlartifacts"),
        "RECSYS_VAR_DIR": str(directory / "var"),
    }


def ensure_model(n_items: int, n_users: int, config: LatencyConfig, cache_root: Path) -> CachedModel:
    """Generate the catalog and train on it unless the cache already holds that exact model."""
    from recsys.datasets.synthetic import SyntheticConfig, generate

    synthetic = SyntheticConfig(n_users=n_users, n_items=n_items, seed=config.seed,
                                interactions_per_user=config.interactions_per_user)
    recipe = {"synthetic": asdict(synthetic), "training": config.training, "seed": config.seed}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]
    key = f"synthetic-{n_items}i-{n_users}u-{digest}"
    directory = (cache_root / key).resolve()  # absolute: the MLflow store records its paths
    done = directory / "trained.json"
    env = model_env(directory)
    if done.exists():
        record = json.loads(done.read_text())
        say(f"{n_items:,} items: reusing the cached model in {directory}")
        return CachedModel(key, directory, n_items, n_users, env, record["train_seconds"], record["generate_seconds"], True)
    if directory.exists():
        shutil.rmtree(directory)  # a half-finished earlier attempt
    directory.mkdir(parents=True)
    say(f"{n_items:,} items: generating {n_users:,} users x {config.interactions_per_user:g} interactions")
    started = time.perf_counter()
    generate(synthetic).save(directory / "dataset")
    generate_seconds = time.perf_counter() - started
    (directory / "training.json").write_text(json.dumps(config.training, indent=2))
    say(f"{n_items:,} items: training with cheap settings ({json.dumps(config.training)})")
    started = time.perf_counter()
    result = subprocess.run(
        [*train_argv(), "--dataset", str(directory / "dataset"), "--config",
         str(directory / "training.json"), "--seed", str(config.seed), "--no-progress"],
        env={**os.environ, **env}, capture_output=True, text=True,
    )
    train_seconds = time.perf_counter() - started
    (directory / "train.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise BenchmarkError(f"recsys train failed for {n_items:,} items (log: {directory / 'train.log'}): "
                             f"{(result.stderr or result.stdout).strip()[-1500:]}")
    record = {"train_seconds": round(train_seconds, 1), "generate_seconds": round(generate_seconds, 1),
              "recipe": recipe, "trained_at": datetime.now(UTC).isoformat(timespec="seconds")}
    done.write_text(json.dumps(record, indent=2))
    say(f"{n_items:,} items: trained in {train_seconds:.0f}s")
    return CachedModel(key, directory, n_items, n_users, env, record["train_seconds"], record["generate_seconds"], False)


def train_argv() -> list[str]:
    """`recsys train`; while the root CLI does not mount it yet, the same command run directly."""
    probe = subprocess.run([recsys_executable(), "train", "--help"], capture_output=True, text=True)
    if probe.returncode == 0:
        return [recsys_executable(), "train"]
    return [sys.executable, "-c", "import typer; from training.cli import train_command; typer.run(train_command)"]


def load_model(model: CachedModel):
    """(bundle, version) of the cached model, loaded the way the server loads it."""
    from recsys.config import environment
    from recsys.registry import load_bundle

    with environment(model.env):
        return load_bundle()


# ---------------------------------------------------------------------------------------------------
# In-process timings: the route's path, stage by stage, on one core
# ---------------------------------------------------------------------------------------------------
def policies_off_pipeline_class():
    """The serving pipeline with the list policies off (a configuration of the one served path:
    the engine keeps only its always-on rule, an item at most once, and no relaxation order, i.e.
    the top k by score). Everything else (sources, filters, ranker, explanations) is unchanged."""
    from functools import partial

    from serving.pipeline import RecommendationPipeline

    return partial(RecommendationPipeline, policies=False)


def adult_known_users(bundle, limit: int, seed: int) -> list[str]:
    """Users with a history (personalized path) who are adults (no minors curfew or budget)."""
    ages = dict(zip(bundle.users["user_id"].cast(str).to_list(), bundle.users["age"].to_list()))
    users = [u for u in bundle.user_index if (ages.get(u) or 0) >= 18]
    if not users:
        raise BenchmarkError("the model has no adult user with a history to request lists for")
    random.Random(seed).shuffle(users)
    return users[:limit]


def single_core() -> contextlib.AbstractContextManager:
    """BLAS, Faiss (OpenMP) and torch on one thread: the in-process figures are per core."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    return threadpool_limits(1)


def stage_summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for stage in STAGES:
        values = np.asarray([r.get(stage, 0.0) for r in rows])
        out[stage] = {**summarize_ms(values), "share": 0.0}
    total_mean = sum(v["mean"] for v in out.values()) or 1.0
    for values in out.values():
        values["share"] = round(values["mean"] / total_mean, 4)
    return out


def bench_in_process(bundle, version: str, users: list[str], config: LatencyConfig, workdir: Path) -> dict:
    """Stage timings of the route's path, then policies on vs off, both on one core."""
    from compliance.logstore import LogConfig, new_request_id
    from serving.config import Settings
    from serving.pipeline import RecommendationRequest
    from serving.routes.recommendations import RecommendationIn
    from serving.services import build_services

    settings = Settings(database_url=f"sqlite:///{workdir / 'state.db'}", logs=LogConfig(dir=workdir / "logs"))
    services = build_services(settings, bundle_loader=lambda uri: (bundle, version))
    if services.pipeline is None:
        raise BenchmarkError(f"the model did not load in process: {services.model_error}")
    pipeline = services.pipeline
    off = policies_off_pipeline_class()(
        services.catalog, services.store, settings.policy, settings.minors, settings.tags,
        retrieval_candidates=settings.retrieval_candidates, popular_candidates=settings.popular_candidates,
        recent_pages_excluded=settings.recent_pages_excluded, shared_state_loader=services.shared_state,
    )
    n = config.inprocess_requests
    warmup = min(50, n)
    clock = time.perf_counter
    rows: list[dict[str, float]] = []
    totals, pipeline_only = [], []
    on_ms, off_ms, policy_on, policy_off = [], [], [], []
    try:
        with single_core():
            # 1. The route's path: run ► log append (before the response) ► record the page.
            for i in range(warmup + n):
                body = RecommendationIn(user_id=users[i % len(users)], surface="home", page=0, k=10)
                request = RecommendationRequest(body.user_id, body.surface, body.page, body.k, body.session_id)
                started = clock()
                now = services.clock()
                audience, state = services.gate.admit_list_reading(body.user_id, now, pipeline.list_read(request),
                                                                   route="bench", request_id="bench")
                admitted = clock()
                rec = pipeline.serve(request, audience, new_request_id(), services.logstore,
                                     timings={"gate": (admitted - started) * 1e3}, state=state)
                ended = clock()
                if i >= warmup:
                    rows.append(dict(rec.trace.timings_ms))
                    totals.append((ended - started) * 1e3)
                    pipeline_only.append((ended - started) * 1e3 - rec.trace.timings_ms["log"])
            # 2. Policies on vs off, interleaved (order alternating) on the same requests.
            for i in range(warmup + n):
                request = RecommendationRequest(users[(i * 7) % len(users)], "home", 0, 10)
                audience = services.gate.admit(request.user_id, services.clock(), route="bench", request_id="bench")
                pair = (pipeline, off) if i % 2 == 0 else (off, pipeline)
                for variant in pair:
                    started = clock()
                    rec = variant.run(request, audience)
                    elapsed = (clock() - started) * 1e3
                    if i >= warmup:
                        (on_ms if variant is pipeline else off_ms).append(elapsed)
                        (policy_on if variant is pipeline else policy_off).append(rec.trace.timings_ms["policy"])
    finally:
        services.gate.usage.close()  # minors' usage counted after their lists: written before the engine goes
        services.logstore.close()
        services.store.engine.dispose()
    on, off_summary = summarize_ms(np.asarray(on_ms)), summarize_ms(np.asarray(off_ms))
    return {
        "requests": n,
        "threads": 1,
        "request": {"surface": "home", "page": 0, "k": 10, "users": len(users), "mode": "personalized, adults"},
        "total_ms": summarize_ms(np.asarray(totals)),
        "pipeline_ms": summarize_ms(np.asarray(pipeline_only)),
        "stages_ms": stage_summary(rows),
        "policy_on_off": {
            "method": "the same requests through the serving pipeline twice, interleaved: policies on (the "
                      "configured PolicyConfig: item + content de-duplication, dispersal, front-screen slots) "
                      "and off (a subclass whose select stage keeps only the engine's always-on item "
                      "uniqueness rule, no relaxation: the top k by score); pipeline.run only, no log append",
            "on_ms": on,
            "off_ms": off_summary,
            "policy_stage_on_ms": summarize_ms(np.asarray(policy_on)),
            "policy_stage_off_ms": summarize_ms(np.asarray(policy_off)),
            "overhead_mean": round(on["mean"] / off_summary["mean"] - 1.0, 4),
            "overhead_p50": round(on["p50"] / off_summary["p50"] - 1.0, 4),
            "overhead_p99": round(on["p99"] / off_summary["p99"] - 1.0, 4),
        },
    }


# ---------------------------------------------------------------------------------------------------
# Faiss index choice: exact vs HNSW vs IVF
# ---------------------------------------------------------------------------------------------------
def bench_indexes(bundle, config: LatencyConfig, k: int, cache_dir: Path) -> list[dict]:
    """Recall@k of each index kind against exact search, and its single-query latency on one core."""
    import faiss

    from recsys.retrieval.index import IndexConfig, ItemIndex, build_index

    vectors = np.ascontiguousarray(bundle.item_factors, dtype=np.float32)
    n = len(vectors)
    k = min(k, n)
    rng = np.random.default_rng(config.seed)
    active = np.asarray(list(bundle.user_index.values()), dtype=np.int64)
    queries = np.ascontiguousarray(bundle.user_factors[rng.choice(active, min(config.index_queries, len(active)),
                                                                  replace=False)], dtype=np.float32)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    served_kind = bundle.index.params.get("kind")
    results = []
    for kind in config.index_kinds:
        entry: dict = {"kind": kind, "served": kind == served_kind, "n_items": n, "k": k}
        if kind == "hnsw" and n > config.hnsw_max_items:
            entry["skipped"] = f"HNSW build skipped above {config.hnsw_max_items:,} items (--hnsw-max-items)"
            results.append(entry)
            continue
        built_at = cache_dir / f"index-{kind}"
        build_seconds = None
        if kind == served_kind:
            index = bundle.index
            build_seconds = None  # built by training; see the training log
        elif (built_at / "build.json").exists():
            index = ItemIndex.load(built_at)
            build_seconds = json.loads((built_at / "build.json").read_text())["build_seconds"]
        else:
            say(f"{n:,} items: building a {kind} index")
            started = time.perf_counter()
            index = build_index(vectors, kind, IndexConfig(seed=config.seed, recall_k=k), sample_queries=bundle.user_factors[active])
            build_seconds = round(time.perf_counter() - started, 2)
            if kind != "flat":  # exact search builds in a moment; only the slow builds are cached
                index.save(built_at)
                (built_at / "build.json").write_text(json.dumps({"build_seconds": build_seconds}))
        faiss.omp_set_num_threads(1)
        found = np.vstack([index.search(q[None, :], k)[1] for q in queries])
        timings = []
        for q in queries:
            started = time.perf_counter()
            index.search(q[None, :], k)
            timings.append((time.perf_counter() - started) * 1e3)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth))
        entry.update(
            recall_at_k=round(hits / max(1, int((truth >= 0).sum())), 4),
            search_ms=summarize_ms(np.asarray(timings)),
            build_seconds=build_seconds,
            params={key: value for key, value in index.params.items() if key not in ("build_id",)},
        )
        results.append(entry)
        say(f"{n:,} items: {kind} recall@{k} {entry['recall_at_k']:.3f}, search p50 {entry['search_ms']['p50']:.2f} ms")
    del exact
    return results


# ---------------------------------------------------------------------------------------------------
# Over HTTP: a real server, 2 workers, bounded load at each concurrency level
# ---------------------------------------------------------------------------------------------------
_STAGE_METRIC = re.compile(r'^recsys_stage_seconds_(sum|count)\{stage="([^"]+)"\} (\S+)$', re.MULTILINE)


def server_stage_totals(url: str) -> dict[str, tuple[float, float]]:
    """(seconds, count) per stage from the server's /metrics (every worker), empty if unavailable."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, list[float]] = {}
    for kind, stage, value in _STAGE_METRIC.findall(text):
        totals.setdefault(stage, [0.0, 0.0])[0 if kind == "sum" else 1] += float(value)
    return {stage: (seconds, count) for stage, (seconds, count) in totals.items()}


def stage_means_between(before: dict, after: dict) -> dict[str, float]:
    """Mean ms per stage inside the server over the requests between two /metrics scrapes."""
    out = {}
    for stage, (seconds, count) in after.items():
        seconds0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            out[stage] = round((seconds - seconds0) / (count - count0) * 1e3, 3)
    return out


def bench_http(model: CachedModel, users: list[str], config: LatencyConfig, workdir: Path, database_url: str) -> dict:
    """`database_url`: the state database of the in-process run (profiles seeded, recent pages
    recorded), so the server starts warm, as a deployed one does."""
    bodies = [{"user_id": u, "surface": "home", "page": 0, "k": 10} for u in users]
    levels = []
    started = time.perf_counter()
    with ServerProcess(env=model.env, workers=config.workers, workdir=workdir, database_url=database_url) as server:
        startup_s = round(time.perf_counter() - started, 1)
        idle = server.peak_rss()
        # The transport floor: an endpoint that does no work, one connection at a time.
        floor = run_load(server.url, "/readyz", None, LoadConfig(requests=100, concurrency=1, warmup=5,
                                                                  max_duration_s=config.max_duration_s))
        # Untimed: every worker's first requests pay one-off costs (torch's first call, caches).
        warm = LoadConfig(requests=16 * config.workers, concurrency=2 * config.workers, warmup=0,
                          max_duration_s=config.max_duration_s)
        run_load(server.url, RECOMMENDATIONS_PATH, bodies, warm)
        for concurrency in config.concurrency:
            load = LoadConfig(requests=config.requests, concurrency=concurrency, warmup=max(16, 2 * concurrency),
                              max_duration_s=config.max_duration_s)
            before = server_stage_totals(server.url)
            result = run_load(server.url, RECOMMENDATIONS_PATH, bodies, load)
            # The same stages timed inside the server under this load: shows what grows with concurrency.
            levels.append({**result.to_dict(),
                           "server_stage_mean_ms": stage_means_between(before, server_stage_totals(server.url))})
            say(f"{model.n_items:,} items: HTTP c={concurrency}: {result.throughput_rps:.0f} req/s, "
                f"p50 {result.latency_ms['p50']:.1f} ms, p99 {result.latency_ms['p99']:.1f} ms, "
                f"statuses {result.statuses}")
        peak = server.peak_rss()
    return {"workers": config.workers, "startup_seconds": startup_s, "failed_starts": len(server.failed_starts),
            "server_rss_after_start_mb": idle,
            "readyz_ms": floor.latency_ms,
            "server_peak_rss_mb": peak, "levels": levels,
            "request": {"path": RECOMMENDATIONS_PATH, "surface": "home", "page": 0, "k": 10, "users": len(users)}}


# ---------------------------------------------------------------------------------------------------
# The real path: the served model's real users over HTTP (wrk), against the floor of a bare app
# ---------------------------------------------------------------------------------------------------
_HISTOGRAM_LINE = re.compile(r"^recsys_stage_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape_stage_histograms(url: str) -> dict[str, dict]:
    """The `recsys_stage_seconds` histogram per stage from /metrics (summed over every worker):
    {stage: {"sum": seconds, "count": n, "buckets": {upper bound in seconds: cumulative count}}}."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError as exc:
        raise BenchmarkError(f"cannot read {url}/metrics: {exc}") from None
    return parse_stage_histograms(text)


def parse_stage_histograms(text: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for kind, labels, value in _HISTOGRAM_LINE.findall(text):
        names = dict(_LABEL.findall(labels))
        if "stage" not in names:
            continue
        entry = out.setdefault(names["stage"], {"sum": 0.0, "count": 0.0, "buckets": {}})
        if kind == "bucket":
            le = float("inf") if names.get("le") == "+Inf" else float(names["le"])
            entry["buckets"][le] = entry["buckets"].get(le, 0.0) + float(value)
        else:
            entry[kind] += float(value)
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}, interpolated linearly inside
    its bucket (as Prometheus' histogram_quantile); the highest finite bound if it falls in +Inf."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    low, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return low
            if count == below:
                return bound
            return low + (bound - low) * (rank - below) / (count - below)
        low, below = bound, count
    return low


def stage_stats_between(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """Per stage, over the requests between two scrapes: count, mean ms (from _sum/_count deltas)
    and p99 ms (from the bucket deltas, interpolated inside the bucket whose bounds are given)."""
    out = {}
    for stage in [*STAGES, *sorted(set(after) - set(STAGES))]:
        if stage not in after:
            continue
        now, then = after[stage], before.get(stage, {"sum": 0.0, "count": 0.0, "buckets": {}})
        count = now["count"] - then["count"]
        if count <= 0:
            continue
        buckets = {le: n - then["buckets"].get(le, 0.0) for le, n in now["buckets"].items()}
        p99 = histogram_quantile(0.99, buckets)
        bounds = sorted(buckets)
        upper = next((b for b in bounds if buckets[b] >= 0.99 * count), bounds[-1] if bounds else None)
        lower = max((b for b in bounds if b < (upper or 0)), default=0.0)
        out[stage] = {"count": int(count), "mean_ms": round((now["sum"] - then["sum"]) / count * 1e3, 3),
                      "p99_ms": None if p99 is None else round(p99 * 1e3, 3),
                      "p99_bucket_ms": [round(lower * 1e3, 3), None if upper in (None, float("inf")) else round(upper * 1e3, 3)]}
    return out


def redact_url(url: str) -> str:
    """A database URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported as given, minus anything after '@'
        return re.sub(r"//[^@/]*@", "//***@", url)


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (from /proc)."""
    from benchmarks.machine import process_tree

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in process_tree(pid):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _thread_cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(main threads, other threads) CPU seconds of worker processes: in a uvicorn worker the main
    thread runs the event loop (HTTP, middleware, validation, serialization); the others are the
    route's compute threads and the log's fsync thread."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            seconds = (int(fields[11]) + int(fields[12])) / tick
            if task.name == str(pid):
                main += seconds
            else:
                other += seconds
    return main, other


def _machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat, every core)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / tick, total / tick


def _children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_accounted_run(server: ServerProcess, run) -> tuple:
    """Run `run()` (a wrk run) and account the CPU spent meanwhile: by the server's process tree,
    by wrk (this process's reaped children) and by everything else on the machine (other users of
    a shared machine: the noise of the measurement)."""
    workers = server.worker_pids()
    threads0 = _thread_cpu_seconds(workers)
    server0, wrk0, (busy0, total0) = _tree_cpu_seconds(server.process.pid), _children_cpu_seconds(), _machine_cpu_seconds()
    started = time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    threads1 = _thread_cpu_seconds(workers)
    server_s = _tree_cpu_seconds(server.process.pid) - server0
    wrk_s = _children_cpu_seconds() - wrk0
    busy1, total1 = _machine_cpu_seconds()
    other_s = max(0.0, (busy1 - busy0) - server_s - wrk_s)
    return result, {"server_cores": round(server_s / wall, 2), "wrk_cores": round(wrk_s / wall, 2),
                    "other_processes_cores": round(other_s / wall, 2),
                    "machine_cores": round((total1 - total0) / wall) if total1 > total0 else os.cpu_count(),
                    "server_cpu_ms_per_response": round(server_s * 1e3 / max(1, result.requests), 3),
                    "worker_cpu_ms_per_response": {
                        "event_loop_thread": round((threads1[0] - threads0[0]) * 1e3 / max(1, result.requests), 3),
                        "other_threads": round((threads1[1] - threads0[1]) * 1e3 / max(1, result.requests), 3)}}


def real_path_model(config: RealPathConfig) -> dict:
    """The served model: its URI, version, dataset and every user with a history (the real users,
    shuffled once, seed 0: round-robin then does not walk the ids in order)."""
    from recsys.config import core_settings, environment
    from recsys.registry import load_bundle

    with environment(config.model_env):
        settings = core_settings()
        uri = config.model_uri or f"models:/{settings.model_name}@{settings.model_alias}"
        try:
            bundle, version = load_bundle(uri)
        except Exception as exc:  # noqa: BLE001 - registry, MLflow or bundle errors: one line naming the URI
            raise BenchmarkError(f"--model-uri: cannot load {uri}: {' '.join(str(exc).split())[:300]} "
                                 "(train one first: recsys train --dataset movielens-100k)") from None
    users = [str(u) for u in bundle.user_index]
    if not users:
        raise BenchmarkError(f"--model-uri: {uri} has no user with a history to request lists for")
    ages = dict(zip(bundle.users["user_id"].cast(str).to_list(), bundle.users["age"].to_list()))
    random.Random(0).shuffle(users)
    dataset = dict((bundle.manifest or {}).get("dataset") or {})
    info = {"uri": uri, "version": version, "dataset": dataset.get("name"), "n_items": int(len(bundle.item_ids)),
            "n_users": len(users), "minors": sum(1 for u in users if (ages.get(u) or 99) < 18),
            "index": {k: v for k, v in dict(bundle.index.params).items() if k in ("kind", "nlist", "nprobe", "hnsw_m")},
            "users": users}
    del bundle
    gc.collect()
    return info


def _real_response_body(url: str, bodies: list[dict], sample: int = 25) -> bytes:
    """One real response of median size among the first `sample` users: the floor returns it."""
    responses, last = [], None
    with httpx.Client(timeout=60) as client:
        for body in bodies[:sample]:
            last = client.post(f"{url}{RECOMMENDATIONS_PATH}", json=body)
            if last.status_code == 200:
                responses.append(last.content)
    if not responses:
        raise BenchmarkError(f"the real server answered no list for the first {sample} users "
                             f"(last: {last.status_code} {last.text[:300]})")
    responses.sort(key=len)
    return responses[len(responses) // 2]


def _profile_workers(server: ServerProcess, wrk: str, script: Path, config: RealPathConfig, out_dir: Path) -> dict:
    """py-spy records every worker while wrk drives the top concurrency level (untimed: sampling
    slows the workers). Raw collapsed stacks go to out_dir; the summary keeps the top frames."""
    pyspy = Path(sys.executable).with_name("py-spy")
    if not pyspy.exists():
        found = shutil.which("py-spy")
        if not found:
            return {"skipped": "py-spy is not installed in the venv"}
        pyspy = Path(found)
    duration = max(1, round(config.profile_s))
    recorders = []
    for pid in server.worker_pids():
        output = out_dir / f"real_path_profile_{pid}.txt"
        recorders.append((output, subprocess.Popen(
            [str(pyspy), "record", "--pid", str(pid), "--duration", str(duration), "--rate", "200",
             "--format", "raw", "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    time.sleep(0.5)
    # The lowest concurrency: one request at a time per worker, so a sample's stack is where that
    # request's time goes (under concurrency the samples also count the threads' GIL waits).
    load = run_wrk(wrk, server.url, script, min(config.concurrency), duration, config.threads, config.timeout_s)
    errors = []
    for output, recorder in recorders:
        try:
            _, stderr = recorder.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, stderr = recorder.communicate()
        if recorder.returncode != 0 or not output.exists():
            errors.append(stderr.decode(errors="replace").strip()[-300:])
    files = [o for o, _ in recorders if o.exists()]
    summary = summarize_profile(files)
    return {"seconds": duration, "rate_hz": 200, "concurrency": min(config.concurrency),
            "lists_per_s_while_sampled": load.lists_per_s, "files": [f.name for f in files], "errors": errors, **summary}


IDLE_LEAVES = ("Condition.wait (threading.py", "Event.wait (threading.py", "EpollSelector.select (selectors.py",
               "Thread._wait_for_tstate_lock (threading.py", "select (selectors.py", "Queue.get (queue.py")
PROJECT_DIRS = ("serving/", "served/", "compliance/", "recsys/", "training/")


def summarize_profile(files: list[Path], top: int = 25) -> dict:
    """From py-spy raw (collapsed) stacks, leaving out the samples of threads waiting (innermost
    frame a Condition/Event wait, the event loop's epoll, an idle worker thread's queue): the share
    of busy samples in which each project function is on the stack (inclusive), in which each
    function of any code is the innermost frame (self), and in which each project line is the
    innermost project frame (where the project's own code spends it, libraries below included)."""
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = busy = 0
    frame_re = re.compile(r"^(.*) \((.*):(\d+)\)$")
    for file in files:
        for line in file.read_text(errors="replace").splitlines():
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            if frames[-1].startswith(IDLE_LEAVES):
                continue
            busy += n
            joined = ";".join(frames)
            kind = ("event loop" if "BaseEventLoop.run_forever" in joined else
                    "compute threads (the route's work)" if "WorkerThread.run (anyio" in joined else "other threads")
            threads[kind] = threads.get(kind, 0) + n
            seen = set()
            innermost = None
            for frame in frames:
                match = frame_re.match(frame)
                if not match:
                    continue
                function, path, lineno = match.groups()
                short = _project_path(path, PROJECT_DIRS)
                if short is None:
                    continue
                key = f"{short}:{function}"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] = inclusive.get(key, 0) + n
                innermost = f"{short}:{lineno} ({function})"
            if innermost:
                own[innermost] = own.get(innermost, 0) + n
            match = frame_re.match(frames[-1])
            key = f"{match[1]} ({match[2]})" if match else frames[-1]
            leaf[key] = leaf.get(key, 0) + n

    def ranked(counts: dict[str, int], name: str) -> list[dict]:
        return [{name: k, "share": round(v / busy, 4) if busy else 0.0}
                for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "busy_samples": busy, "threads": ranked(threads, "thread"), "inclusive": ranked(inclusive, "frame"),
            "self": ranked(leaf, "frame"), "innermost_project_line": ranked(own, "line")}


def _project_path(path: str, prefixes: tuple[str, ...]) -> str | None:
    for prefix in prefixes:
        index = path.find(prefix)
        if index >= 0 and ".venv" not in path and "site-packages" not in path:
            return path[index:]
    return None


def bench_real_path(config: RealPathConfig, workdir: Path, out_dir: Path | None = None) -> dict:
    """The model's real users over HTTP against `recsys serve`, and the floor app, in one run."""
    wrk = find_wrk(config.wrk)
    version_text = wrk_version(wrk)
    say("real path: loading the model's users")
    model = real_path_model(config)
    users = model.pop("users")
    bodies = [{"user_id": u, "surface": config.surface, "page": 0, "k": config.k} for u in users]
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "real_path.lua"
    script.write_text(wrk_script(RECOMMENDATIONS_PATH, bodies, config.threads))
    fresh = config.database_url is None
    env = {**config.model_env, "RECSYS_MODEL_URI": model["uri"]}

    def load(url: str, concurrency: int, seconds: float):
        return run_wrk(wrk, url, script, concurrency, seconds, config.threads, config.timeout_s)

    levels, floors, profile = [], {w: [] for w in config.floor_workers}, None
    with contextlib.ExitStack() as stack:
        say(f"real path: starting recsys serve --workers {config.workers} ({model['uri']}, version {model['version']})")
        started = time.perf_counter()
        real = stack.enter_context(ServerProcess(env=env, workers=config.workers, workdir=workdir / "real",
                                                 database_url=config.database_url))
        startup_s = round(time.perf_counter() - started, 1)
        body = _real_response_body(real.url, bodies)
        body_file = workdir / "floor-body.json"
        body_file.write_bytes(body)
        floor_servers = {}
        for w in config.floor_workers:
            floor_servers[w] = stack.enter_context(ServerProcess(env={FLOOR_BODY_ENV: str(body_file)}, workers=w,
                                                                 workdir=workdir / f"floor-{w}", command=floor_command()))
        if config.warmup_s >= 1:  # untimed: every worker's first requests pay one-off costs
            for server in (real, *floor_servers.values()):
                load(server.url, max(config.concurrency), config.warmup_s)
        # Interleaved per concurrency level (real, then each floor) so that drift in the machine's
        # load hits both sides of the ratio alike.
        for concurrency in config.concurrency:
            before = scrape_stage_histograms(real.url)
            result, cpu = _cpu_accounted_run(real, lambda: load(real.url, concurrency, config.duration_s))
            time.sleep(0.5)  # requests in flight when wrk stopped finish and are observed
            stages = stage_stats_between(before, scrape_stage_histograms(real.url))
            levels.append({**result.to_dict(), "cpu": cpu, "server_stages": stages,
                           "server_lists": max((v["count"] for v in stages.values()), default=0),
                           "server_stage_sum_mean_ms": round(sum(v["mean_ms"] for v in stages.values()), 3)})
            say(f"real path c={concurrency}: {result.lists_per_s:.0f} lists/s, p50 {result.latency_ms['p50']:.1f} ms, "
                f"p99 {result.latency_ms['p99']:.1f} ms, non-2xx {result.non_2xx}")
            for w, server in floor_servers.items():
                floor, cpu = _cpu_accounted_run(server, lambda: load(server.url, concurrency, config.duration_s))
                floors[w].append({**floor.to_dict(), "cpu": cpu})
                say(f"floor ({w} worker{'s' if w > 1 else ''}) c={concurrency}: {floor.requests_per_s:.0f} req/s, "
                    f"p50 {floor.latency_ms['p50']:.2f} ms, p99 {floor.latency_ms['p99']:.2f} ms")
        if config.profile_s > 0 and out_dir is not None:
            say(f"real path: py-spy on {len(real.worker_pids())} workers for {config.profile_s:g} s (untimed)")
            profile = _profile_workers(real, wrk, script, config, out_dir)
        real_rss = real.peak_rss()
        floor_rss = {w: s.peak_rss() for w, s in floor_servers.items()}
        failed_starts = len(real.failed_starts)
    ratios = []
    for level in levels:
        for w, runs in floors.items():
            floor = next(f for f in runs if f["concurrency"] == level["concurrency"])
            ratios.append({
                "concurrency": level["concurrency"], "floor_workers": w,
                "throughput": round(level["lists_per_s"] / floor["requests_per_s"], 4) if floor["requests_per_s"] else None,
                "p50": round(level["latency_ms"]["p50"] / floor["latency_ms"]["p50"], 2) if floor["latency_ms"]["p50"] else None,
                "p99": round(level["latency_ms"]["p99"] / floor["latency_ms"]["p99"], 2) if floor["latency_ms"]["p99"] else None,
            })
    return {
        "model": model,
        "server": {"command": f"recsys serve --workers {config.workers}", "workers": config.workers,
                   "startup_seconds": startup_s, "failed_starts": failed_starts,
                   "database": redact_url(config.database_url) if config.database_url else "sqlite (a fresh file)",
                   "state": "fresh (empty database and log directory)" if fresh else
                            "the given --database-url as it is (not reset); a fresh log directory",
                   "peak_rss_mb": real_rss},
        "load": {"tool": version_text, "threads": config.threads, "duration_s": config.duration_s,
                 "warmup_s": config.warmup_s, "timeout_s": config.timeout_s,
                 "request": {"method": "POST", "path": RECOMMENDATIONS_PATH, "surface": config.surface, "page": 0,
                             "k": config.k, "users": len(users), "order": "every user with a history, round-robin"}},
        "response_bytes": len(body),
        "levels": levels,
        "floor": {"app": "bare FastAPI, POST /v1/recommendations returns a fixed body (a real response's bytes)",
                  "server": "uvicorn, NoDelayH11Protocol, access log off; N > 1 under serving.workers.Supervisor",
                  "body_bytes": len(body),
                  "servers": [{"workers": w, "levels": runs, "peak_rss_mb": floor_rss[w]} for w, runs in floors.items()]},
        "ratios": ratios,
        "profile": profile,
    }


# ---------------------------------------------------------------------------------------------------
# One size, all sizes, goals
# ---------------------------------------------------------------------------------------------------
def bench_size(n_items: int, config: LatencyConfig, cache_root: Path) -> dict:
    n_users = config.users_for(n_items)
    model = ensure_model(n_items, n_users, config, cache_root)
    say(f"{n_items:,} items: loading the model")
    started = time.perf_counter()
    bundle, version = load_model(model)
    load_seconds = round(time.perf_counter() - started, 1)
    users = adult_known_users(bundle, 5_000, config.seed)
    workdir = Path(tempfile.mkdtemp(prefix=f"latency-{n_items}-"))
    try:
        say(f"{n_items:,} items: in-process timings ({config.inprocess_requests} requests, one core)")
        in_process = bench_in_process(bundle, version, users, config, workdir / "inprocess")
        from serving.config import Settings

        indexes = bench_indexes(bundle, config, Settings().retrieval_candidates, model.directory)
        index_params = dict(bundle.index.params)
        factors = int(bundle.item_factors.shape[1])
        del bundle
        gc.collect()
        state_db = f"sqlite:///{workdir / 'inprocess' / 'state.db'}"
        wanted = config.http and (config.http_max_items is None or n_items <= config.http_max_items)
        http = bench_http(model, users, config, workdir / "server", state_db) if wanted else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "n_items": n_items,
        "n_users": n_users,
        "model": {"cache_key": model.key, "version": version, "factors": factors, "served_index": index_params,
                  "train_seconds": model.train_seconds, "generate_seconds": model.generate_seconds,
                  "reused_cache": model.reused, "load_seconds": load_seconds},
        "in_process": in_process,
        "indexes": indexes,
        "http": http,
        "benchmark_process_peak_rss_mb": round(self_peak_rss_mb(), 1),
    }


def goals(sizes: list[dict]) -> list[dict]:
    """The issue's targets at 1M items, measured or marked not measured (never asserted)."""
    at = next((s for s in sizes if s["n_items"] == GOAL_SIZE), None)
    where = f"{GOAL_SIZE:,} items"

    def goal(name: str, target: str, measured, met, unit: str = "") -> dict:
        return {"goal": name, "target": target, "measured": measured, "unit": unit,
                "met": None if measured is None else bool(met), "at": where}

    if at is None:
        return [goal(name, target, None, None) for name, target in (
            ("in-process p99, one core", "< 5 ms"), ("HTTP p99 at concurrency 8, 2 workers", "< 25 ms"),
            ("HTTP throughput at concurrency 8, 2 workers", ">= 300 req/s"), ("compliance overhead", "< 10 %"),
            ("retrieval recall@K of the served index vs exact", ">= 0.95"))]
    p99 = at["in_process"]["total_ms"]["p99"]
    level8 = next((lv for lv in (at["http"] or {}).get("levels", []) if lv["concurrency"] == 8), None)
    overhead = at["in_process"]["policy_on_off"]["overhead_mean"]
    served = next((i for i in at["indexes"] if i.get("served") and "recall_at_k" in i), None)
    return [
        goal("in-process p99, one core", "< 5 ms", p99, p99 < 5.0, "ms"),
        goal("HTTP p99 at concurrency 8, 2 workers", "< 25 ms", level8 and level8["latency_ms"]["p99"],
             level8 and level8["latency_ms"]["p99"] < 25.0, "ms"),
        goal("HTTP throughput at concurrency 8, 2 workers", ">= 300 req/s", level8 and level8["throughput_rps"],
             level8 and level8["throughput_rps"] >= 300.0, "req/s"),
        goal("compliance overhead", "< 10 %", round(100 * overhead, 1), overhead < 0.10, "%"),
        goal("retrieval recall@K of the served index vs exact", ">= 0.95", served and served["recall_at_k"],
             served and served["recall_at_k"] >= 0.95),
    ]


def _carry_over(result: dict, previous_file: Path) -> None:
    """A section this run did not measure (the synthetic sizes under --real-path-only, the real path
    under --no-real-path) is kept from the run directory's previous latency.json, so the two can be
    run one after the other into one report."""
    try:
        previous = json.loads(previous_file.read_text())
    except (OSError, ValueError):
        return
    carried = []
    if not result["sizes"] and previous.get("sizes"):
        result.update(sizes=previous["sizes"], goals=previous.get("goals", result["goals"]))
        result["config"].update({k: v for k, v in previous.get("config", {}).items() if k != "real_path"})
        carried.append("sizes")
    if result["real_path"] is None and previous.get("real_path"):
        result["real_path"] = previous["real_path"]
        result["config"]["real_path"] = previous.get("config", {}).get("real_path")
        carried.append("real_path")
    if carried:
        result["carried_over"] = {"sections": carried, "from_run_started_at": previous.get("started_at")}


def run(config: LatencyConfig, out_dir: Path, cache_root: Path, machine: dict | None = None) -> dict:
    """Every size in `config`, then the goals; writes out_dir/latency.json and returns it."""
    if config.real_path is not None:
        find_wrk(config.real_path.wrk)  # before hours of synthetic sizes, not after
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    sizes = []
    for n_items in sorted(config.sizes):
        sizes.append(bench_size(n_items, config, cache_root))
    real_path = None
    if config.real_path is not None:
        workdir = Path(tempfile.mkdtemp(prefix="latency-real-path-"))
        try:
            real_path = bench_real_path(config.real_path, workdir, out_dir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "benchmark": "latency",
        "started_at": started_at,
        "duration_s": round(time.perf_counter() - started, 1),
        "config": asdict(config),
        "machine": machine,
        "sizes": sizes,
        "goals": goals(sizes),
        "real_path": real_path,
    }
    _carry_over(result, out_dir / "latency.json")
    (out_dir / "latency.json").write_text(json.dumps(result, indent=2, default=str))
    return result
