"""`recsys bench memory`: how much memory the serving workers of one host hold, per catalog size.

Per size: the cached synthetic model of the latency benchmark (trained with its cheap settings on
first use), a real `recsys serve --workers N` (127.0.0.1, fresh state), a bounded warm-up load so
every worker has served requests, then /proc/PID/smaps_rollup of each worker:
- RSS: the pages a worker has resident, counting shared pages in full (what `top` shows);
- PSS: each resident page divided by the number of processes mapping it, so the workers' PSS
  add up to what the host really spends on them. Pages of the bundle's mapped files are shared.
The bar of issue 13: at 5M items, 2 workers, total PSS <= 1.3x one worker's own footprint (its
RSS): without sharing it is 2x. This process never maps the bundle (a mapping here would lower
the workers' PSS): the users it asks for are read with plain file reads.

`--server-pythonpath DIR` runs the server from another checkout (e.g. the commit before the
mapped columns), to measure the same models before and after a change.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.latency import (
    CHEAP_TRAINING, RECOMMENDATIONS_PATH, BenchmarkError, CachedModel, LatencyConfig, ensure_model, say,
)
from benchmarks.loadgen import LoadConfig, run_load
from benchmarks.server import ServerProcess

ROLLUP_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Clean", "Private_Dirty")
DEFAULT_SIZES = (100_000, 1_000_000, 5_000_000)
SHARING_BAR = 1.3  # issue 13: total PSS of the workers at most this many times one worker's RSS


@dataclass(frozen=True)
class MemoryConfig:
    """Sizes, workers and the warm-up load of one memory run."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    workers: int = 2
    warm_requests: int = 400  # untimed requests before reading memory, spread over the workers
    concurrency: int = 4
    users: int | None = None  # per synthetic catalog; None: the latency benchmark's rule
    server_pythonpath: str | None = None  # run the server from this checkout (a "before" measurement)
    label: str = "mmap"  # names the code measured in the output (e.g. "before", "mmap")
    training: dict = field(default_factory=lambda: json.loads(json.dumps(CHEAP_TRAINING)))

    def __post_init__(self) -> None:
        if not self.sizes or any(s < 100 for s in self.sizes):
            raise BenchmarkError(f"--sizes: item counts must be integers >= 100, got {list(self.sizes)}")
        if self.workers < 1 or self.warm_requests < 1 or self.concurrency < 1:
            raise BenchmarkError("--workers, --warm-requests and --concurrency must be >= 1")
        if self.server_pythonpath is not None and not Path(self.server_pythonpath, "serving").is_dir():
            raise BenchmarkError(f"--server-pythonpath: {self.server_pythonpath} is not a checkout of this project")


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    """The fields of /proc/PID/smaps_rollup in KiB (empty when the process is gone)."""
    values: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return values
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name.strip()] = int(parts[0])
    return values


def mapped_files_kb(pid: int, under: Path) -> dict[str, int]:
    """Rss and Pss (KiB) of the mappings of files under `under` (the bundle) in /proc/PID/smaps."""
    rss = pss = 0
    inside = False
    prefix = str(under.resolve())
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return {"Rss": 0, "Pss": 0}
    for line in lines:
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not line.endswith(" kB"):  # a mapping's header line
            inside = len(head) == 6 and head[5].startswith(prefix)
        elif inside and line.startswith("Rss:"):
            rss += int(line.split()[1])
        elif inside and line.startswith("Pss:"):
            pss += int(line.split()[1])
    return {"Rss": rss, "Pss": pss}


def known_adult_users(bundle_dir: Path, limit: int, seed: int = 0) -> list[str]:
    """Up to `limit` adult users with a history, read with plain reads (no mapping of the bundle)."""
    user_ids = np.load(bundle_dir / "user_ids.npy", allow_pickle=False)
    lengths = np.diff(np.load(bundle_dir / "history_indptr.npy", allow_pickle=False))
    ages = pl.read_parquet(bundle_dir / "users.parquet")
    adults = set(ages.filter(pl.col("age").fill_null(0) >= 18).get_column("user_id").cast(str).to_list())
    users = [str(u) for u, n in zip(user_ids.tolist(), lengths.tolist()) if n > 0 and str(u) in adults]
    rng = np.random.default_rng(seed)
    return [users[i] for i in rng.permutation(len(users))[:limit]] if users else []


def served_bundle_dir(model: CachedModel) -> Path:
    """The bundle the server downloaded into its var dir (models/<key>/)."""
    found = sorted(Path(model.env["RECSYS_VAR_DIR"], "models").glob("*/manifest.json"))
    if not found:
        raise BenchmarkError(f"{model.env['RECSYS_VAR_DIR']}/models: the server downloaded no bundle")
    return found[-1].parent


def measure_size(n_items: int, config: MemoryConfig, cache_root: Path) -> dict:
    latency = LatencyConfig(sizes=(n_items,), users=config.users, training=config.training, http=False)
    model = ensure_model(n_items, latency.users_for(n_items), latency, cache_root)
    env = dict(model.env)
    if config.server_pythonpath:
        env["PYTHONPATH"] = config.server_pythonpath
    workdir = Path(tempfile.mkdtemp(prefix=f"memory-{n_items}-"))
    say(f"{n_items:,} items: starting recsys serve --workers {config.workers} ({config.label})")
    started = time.perf_counter()
    with ServerProcess(env=env, workers=config.workers, workdir=workdir) as server:
        startup_s = round(time.perf_counter() - started, 1)
        bundle_dir = served_bundle_dir(model)
        users = known_adult_users(bundle_dir, 2_000)
        if not users:
            raise BenchmarkError(f"{bundle_dir}: no adult user with a history to request lists for")
        bodies = [{"user_id": u, "surface": "home", "page": 0, "k": 10} for u in users]
        load = run_load(server.url, RECOMMENDATIONS_PATH, bodies,
                        LoadConfig(requests=config.warm_requests, concurrency=config.concurrency, warmup=0))
        workers = []
        for pid in server.worker_pids():
            rollup = smaps_rollup_kb(pid)
            workers.append({"pid": pid, **{f"{k.lower()}_mb": round(rollup.get(k, 0) / 1024, 1) for k in ROLLUP_FIELDS},
                            # to the KiB: a small catalog's mapped files are a few pages
                            "bundle_files": {k.lower() + "_mb": round(v / 1024, 3)
                                             for k, v in mapped_files_kb(pid, bundle_dir).items()}})
    total_pss = sum(w["pss_mb"] for w in workers)
    one_rss = max((w["rss_mb"] for w in workers), default=0.0)
    ratio = round(total_pss / one_rss, 3) if one_rss else None
    result = {
        "n_items": n_items, "n_users": model.n_users, "code": config.label, "workers": workers,
        "total_rss_mb": round(sum(w["rss_mb"] for w in workers), 1), "total_pss_mb": round(total_pss, 1),
        "largest_worker_rss_mb": one_rss, "total_pss_over_one_worker_rss": ratio,
        "startup_seconds": startup_s, "model_cache_key": model.key,
        "warm_load": {"requests": load.requests_sent, "ok": load.ok, "statuses": load.statuses,
                      "p50_ms": load.latency_ms.get("p50"), "p99_ms": load.latency_ms.get("p99")},
    }
    say(f"{n_items:,} items ({config.label}): " + ", ".join(
        f"worker {w['pid']} RSS {w['rss_mb']:.0f} MB PSS {w['pss_mb']:.0f} MB" for w in workers)
        + f"; total PSS {total_pss:.0f} MB = {ratio}x one worker's RSS")
    return result


def run(config: MemoryConfig, out_dir: Path, cache_root: Path, machine: dict | None = None) -> dict:
    """Measure every size in turn (one server at a time) and write memory-<label>.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    sizes = [measure_size(n, config, cache_root) for n in sorted(config.sizes)]
    largest = sizes[-1]
    result = {
        "config": {**asdict(config), "sizes": list(config.sizes)},
        "machine": machine,
        "sizes": sizes,
        "bar": {"n_items": largest["n_items"], "target": f"total PSS <= {SHARING_BAR}x one worker's RSS",
                "measured": largest["total_pss_over_one_worker_rss"],
                "met": largest["total_pss_over_one_worker_rss"] is not None
                and largest["total_pss_over_one_worker_rss"] <= SHARING_BAR},
        "pid": os.getpid(),
    }
    path = out_dir / f"memory-{config.label}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"{'items':>10} {'code':>8} " + " ".join(f"{'w' + str(i) + ' RSS/PSS MB':>18}" for i in range(config.workers))
          + f" {'total PSS MB':>13} {'PSS/RSS1':>9}")
    for size in sizes:
        cells = " ".join(f"{w['rss_mb']:>8.0f}/{w['pss_mb']:<9.0f}" for w in size["workers"])
        print(f"{size['n_items']:>10,} {size['code']:>8} {cells} {size['total_pss_mb']:>13.0f} "
              f"{size['total_pss_over_one_worker_rss']!s:>9}")
    print(f"wrote {path}")
    return result
