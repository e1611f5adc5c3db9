"""`recsys bench latency|quality|compliance|memory|all|report`: run the benchmarks into one run directory
(benchmarks/results/<run-name>/, git-ignored) and (re)build its report.md and report.html.

Each command writes machine.json and its own JSON, then rebuilds the report from every JSON in
the directory, so `latency` then `quality` with the same --out make one report.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from recsys.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache"

app = typer.Typer(help="Latency, quality and compliance benchmarks with a Markdown/HTML report.", no_args_is_help=True)

OutOption = Annotated[
    Path | None, typer.Option("--out", help="Run directory (default: benchmarks/results/run-<timestamp>).", file_okay=False)
]
SizesOption = Annotated[
    str, typer.Option("--sizes", help="Catalog sizes in items, comma-separated; k and M suffixes (5M is optional: slow).")
]
RequestsOption = Annotated[int, typer.Option("--requests", help="Timed HTTP requests per concurrency level.", min=1)]
SeedsOption = Annotated[str, typer.Option("--seeds", help="Quality seeds, comma-separated.")]
HttpMaxOption = Annotated[
    str | None,
    typer.Option("--http-max-items", help="Measure over HTTP only up to this catalog size (e.g. 1M; the server's "
                                          "workers share the mapped model, `recsys bench memory` says how much)."),
]
RealPathOption = Annotated[
    bool, typer.Option("--real-path/--no-real-path",
                       help="Also run the real-path section: the registered model under `recsys serve`, driven by wrk "
                            "(install: scripts/bench-deps.sh), against a bare FastAPI floor.")
]
ModelUriOption = Annotated[
    str | None, typer.Option("--model-uri", help="Real path: MLflow model URI to serve (default: the registered model, "
                                                 "models:/<name>@<alias> of the configured MLflow store).")
]
DatabaseUrlOption = Annotated[
    str | None, typer.Option("--database-url", help="Real path: the server's state database (default: a fresh SQLite "
                                                    "file; e.g. postgresql+psycopg://user@host/db, used as it is).")
]
WrkDurationOption = Annotated[float, typer.Option("--wrk-duration", help="Real path: seconds of wrk per run.", min=1)]
UrlOption = Annotated[
    str | None, typer.Option("--url", help="Audit this running server instead of starting one (e.g. http://127.0.0.1:8000).")
]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def parse_sizes(text: str) -> tuple[int, ...]:
    """"100k,1M,5M" -> (100000, 1000000, 5000000); a ValueError naming --sizes otherwise."""
    sizes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmM]?)", part)
        if not match:
            raise ValueError(f"--sizes: {part!r} is not a size (examples: 2000, 100k, 1M)")
        scale = {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()]
        sizes.append(int(float(match[1]) * scale))
    if not sizes:
        raise ValueError("--sizes: give at least one size, e.g. --sizes 100k,1M")
    return tuple(sizes)


def _one_size(text: str) -> int:
    try:
        (size,) = parse_sizes(text)
    except ValueError:
        raise ValueError(f"--http-max-items: expected one size such as 1M, got {text!r}") from None
    return size


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag}: give at least one integer")
    return values


def _run_dir(out: Path | None) -> Path:
    directory = out or RESULTS / f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"--out: cannot create {directory}: {exc.strerror}")
    return directory


def _machine(directory: Path) -> dict:
    from benchmarks.machine import describe

    machine = describe()
    (directory / "machine.json").write_text(json.dumps(machine, indent=2))
    return machine


def _report(directory: Path) -> None:
    from benchmarks.report import build

    md, page = build(directory)
    typer.echo(f"report: {md}\n        {page}")


def _guarded(action, fatal: bool = True) -> bool:
    """Run `action`, turning the benchmarks' own errors into one-line messages: exit 2 when
    `fatal`, else print the error and return False (so `all` goes on with the other benchmarks)."""
    from benchmarks.latency import BenchmarkError
    from benchmarks.loadgen import LoadError
    from benchmarks.report import ReportError
    from benchmarks.server import ServerError

    try:
        action()
        return True
    except (BenchmarkError, LoadError, ReportError, ServerError, ValueError) as exc:
        message = " ".join(str(exc).split())
        if len(message) > 2000:  # keep the start (what failed) and the end (the exception's last words)
            message = f"{message[:500]} ... {message[-1500:]}"
        if fatal:
            _fail(message)
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        return False


def _real_path_config(workers: int = 2, model_uri: str | None = None, database_url: str | None = None,
                      wrk_duration: float = 10.0, wrk_warmup: float = 3.0, wrk_concurrency: str = "1,8",
                      wrk_threads: int = 1, floor_workers: str = "1,2", profile_seconds: float = 0.0):
    from benchmarks.latency import RealPathConfig

    return RealPathConfig(model_uri=model_uri, database_url=database_url, workers=workers, duration_s=wrk_duration,
                          warmup_s=wrk_warmup, concurrency=parse_ints(wrk_concurrency, "--wrk-concurrency"),
                          threads=wrk_threads, floor_workers=parse_ints(floor_workers, "--floor-workers"),
                          profile_s=profile_seconds)


def _latency(directory: Path, machine: dict, sizes: str, requests: int, inprocess_requests: int, concurrency: str,
             workers: int, users: int | None, index_kinds: str, hnsw_max_items: int, http: bool, cache: Path,
             http_max_items: str | None = None, real_path=None, synthetic: bool = True) -> None:
    """`real_path`: a RealPathConfig (None: not run); `synthetic`: False runs the real path only."""
    from benchmarks.latency import LatencyConfig, run

    config = LatencyConfig(
        sizes=parse_sizes(sizes) if synthetic else (), users=users, requests=requests, inprocess_requests=inprocess_requests,
        concurrency=parse_ints(concurrency, "--concurrency"), workers=workers,
        index_kinds=tuple(k.strip() for k in index_kinds.split(",") if k.strip()), hnsw_max_items=hnsw_max_items, http=http,
        http_max_items=_one_size(http_max_items) if http_max_items else None, real_path=real_path,
    )
    run(config, directory, cache, machine)


def _quality(directory: Path, machine: dict, dataset: str, seeds: str, mlflow: bool, training_config: Path | None,
             quick: bool = False, peers: str | None = None) -> None:
    from benchmarks.quality import PEER_LABELS, QualityConfig, run
    from training.config import ConfigError, load_config

    try:
        training = load_config(training_config) if training_config else None
    except ConfigError as exc:
        raise ValueError(f"--training-config: {exc}") from None
    chosen = tuple(PEER_LABELS) if peers is None else tuple(p.strip() for p in peers.split(",") if p.strip())
    if not chosen:
        raise ValueError(f"--peers: give peers, comma-separated, from {', '.join(PEER_LABELS)}")
    run(QualityConfig(dataset=dataset, seeds=parse_ints(seeds, "--seeds"), mlflow=mlflow, quick=quick, peers=chosen),
        directory, machine, training)


def _compliance(directory: Path, machine: dict, url: str | None, admin_token: str | None, workers: int, lists: int,
                user_ids: str | None) -> None:
    from benchmarks.compliance import ComplianceConfig, run

    ids = tuple(u.strip() for u in (user_ids or "").split(",") if u.strip())
    run(ComplianceConfig(url=url, admin_token=admin_token, workers=workers, lists=lists, user_ids=ids), directory, machine)


@app.command("latency")
def latency_command(
    out: OutOption = None,
    sizes: SizesOption = "100k,1M",
    requests: RequestsOption = 2_000,
    inprocess_requests: Annotated[int, typer.Option(help="Timed in-process requests (and policy on/off pairs).", min=1)] = 2_000,
    concurrency: Annotated[str, typer.Option(help="HTTP concurrency levels, comma-separated.")] = "1,8,32",
    workers: Annotated[int, typer.Option(help="Server worker processes.", min=1, max=64)] = 2,
    users: Annotated[int | None, typer.Option(help="Users per synthetic catalog (default: items/50 within 2k..20k).", min=10)] = None,
    index_kinds: Annotated[str, typer.Option(help="Faiss index kinds to compare: flat, hnsw, ivf.")] = "flat,hnsw,ivf",
    hnsw_max_items: Annotated[int, typer.Option(help="Skip the HNSW build above this many items (slow).", min=1)] = 1_000_000,
    http: Annotated[bool, typer.Option(help="Also measure over HTTP against a real server.")] = True,
    http_max_items: HttpMaxOption = None,
    cache: Annotated[Path, typer.Option(help="Where trained models per size are cached.", file_okay=False)] = CACHE,
    real_path: RealPathOption = True,
    real_path_only: Annotated[bool, typer.Option("--real-path-only", help="Run only the real-path section (no synthetic "
                                                                           "catalogs); other sections already in --out are kept.")] = False,
    model_uri: ModelUriOption = None,
    database_url: DatabaseUrlOption = None,
    wrk_duration: WrkDurationOption = 10.0,
    wrk_warmup: Annotated[float, typer.Option(help="Real path: untimed wrk seconds per server first (0: none).", min=0)] = 3.0,
    wrk_concurrency: Annotated[str, typer.Option(help="Real path: wrk connections per run, comma-separated.")] = "1,8",
    wrk_threads: Annotated[int, typer.Option(help="Real path: wrk threads (1 leaves the other core to the server).", min=1)] = 1,
    floor_workers: Annotated[str, typer.Option(help="Real path: worker counts of the bare-app floor, comma-separated.")] = "1,2",
    profile_seconds: Annotated[float, typer.Option(help="Real path: afterwards, py-spy records each worker under wrk for "
                                                        "this long (untimed; 0: no profile).", min=0)] = 0.0,
) -> None:
    """Per-stage in-process timings, policies on vs off, Faiss index choice, and HTTP load at each size;
    then the real path (the registered model's real users over HTTP with wrk) against a bare-app floor."""
    if real_path_only and not real_path:
        _fail("--real-path-only and --no-real-path exclude each other")
    directory = _run_dir(out)
    machine = _machine(directory)
    ok = _guarded(lambda: _latency(
        directory, machine, sizes, requests, inprocess_requests, concurrency, workers, users, index_kinds,
        hnsw_max_items, http, cache, http_max_items, synthetic=not real_path_only,
        real_path=_real_path_config(workers, model_uri, database_url, wrk_duration, wrk_warmup, wrk_concurrency,
                                    wrk_threads, floor_workers, profile_seconds) if real_path else None))
    if ok:
        _guarded(lambda: _report(directory))


@app.command("memory")
def memory_command(
    out: OutOption = None,
    sizes: SizesOption = "100k,1M,5M",
    workers: Annotated[int, typer.Option(help="Server worker processes.", min=1, max=64)] = 2,
    warm_requests: Annotated[int, typer.Option(help="Requests served before memory is read.", min=1)] = 400,
    users: Annotated[int | None, typer.Option(help="Users per synthetic catalog (default: items/50 within 2k..20k).", min=10)] = None,
    server_pythonpath: Annotated[str | None, typer.Option(help="Run the server from this checkout (e.g. a "
                                                               "`git worktree` of an older commit) to measure it.")] = None,
    label: Annotated[str, typer.Option(help="Name of the code measured; the output is memory-<label>.json.")] = "mmap",
    cache: Annotated[Path, typer.Option(help="Where trained models per size are cached.", file_okay=False)] = CACHE,
) -> None:
    """RSS and PSS (/proc/PID/smaps_rollup) of each worker of a `recsys serve` per catalog size, and
    their total: how much of a catalog the workers of one host share."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", label):
        _fail(f"--label: letters, digits, - and _ only, got {label!r}")
    directory = _run_dir(out)
    machine = _machine(directory)

    def action() -> None:
        from benchmarks.memory import MemoryConfig, run

        run(MemoryConfig(sizes=parse_sizes(sizes), workers=workers, warm_requests=warm_requests, users=users,
                         server_pythonpath=server_pythonpath, label=label), directory, cache, machine)

    _guarded(action)


@app.command("quality")
def quality_command(
    out: OutOption = None,
    dataset: Annotated[str, typer.Option(help="Dataset name or folder.")] = "movielens-100k",
    seeds: SeedsOption = "0,1,2",
    mlflow: Annotated[bool, typer.Option(help="Log the result to the MLflow experiment 'benchmarks'.")] = True,
    training_config: Annotated[Path | None, typer.Option(help="Training config file (JSON/TOML); default: the defaults.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small tuning grids and short SASRec+ training (a smoke run).")] = False,
    peers: Annotated[str | None, typer.Option(help="Peers to score, comma-separated (popular, recency, itemknn, rp3beta, "
                                              "ease, als, sasrec); default: all. The two-stage rows and the price "
                                              "tables do not depend on them.")] = None,
) -> None:
    """The offline protocol over several seeds under both exclusion rules: the peers (MostPopular,
    recency-popularity, ItemKNN, RP3beta, EASE, ALS, SASRec+, each tuned on validation), the two-stage
    model, the served home and feed lists, and where the policy's price on home goes."""
    directory = _run_dir(out)
    machine = _machine(directory)
    _guarded(lambda: _quality(directory, machine, dataset, seeds, mlflow, training_config, quick, peers))
    _guarded(lambda: _report(directory))


@app.command("compliance")
def compliance_command(
    out: OutOption = None,
    url: UrlOption = None,
    admin_token: Annotated[str | None, typer.Option(help="Admin token of the --url server (default: RECSYS_ADMIN_TOKEN).")] = None,
    workers: Annotated[int, typer.Option(help="Workers of the server started here.", min=1, max=64)] = 2,
    lists: Annotated[int, typer.Option(help="Lists of the audit's de-duplication/dispersal crawl.", min=1, max=1000)] = 40,
    user_ids: Annotated[str | None, typer.Option(help="Known user ids to audit with (default: discovered).")] = None,
) -> None:
    """The black-box audit, article by article, against a fresh server (or --url)."""
    directory = _run_dir(out)
    machine = _machine(directory)
    _guarded(lambda: _compliance(directory, machine, url, admin_token, workers, lists, user_ids))
    _guarded(lambda: _report(directory))


@app.command("all")
def all_command(
    out: OutOption = None,
    sizes: SizesOption = "100k,1M",
    requests: RequestsOption = 2_000,
    seeds: SeedsOption = "0,1,2",
    url: UrlOption = None,
    dataset: Annotated[str, typer.Option(help="Quality dataset name or folder.")] = "movielens-100k",
    http: Annotated[bool, typer.Option(help="Latency over HTTP too.")] = True,
    http_max_items: HttpMaxOption = None,
    real_path: RealPathOption = True,
    model_uri: ModelUriOption = None,
    database_url: DatabaseUrlOption = None,
    wrk_duration: WrkDurationOption = 10.0,
) -> None:
    """Latency (synthetic catalogs and the real path), quality and compliance into one run directory, then the report."""
    directory = _run_dir(out)
    machine = _machine(directory)
    # A failing benchmark does not stop the others; the command fails at the end if any did.
    results = [
        _guarded(lambda: _latency(directory, machine, sizes, requests, 2_000, "1,8,32", 2, None, "flat,hnsw,ivf",
                                  1_000_000, http, CACHE, http_max_items,
                                  real_path=_real_path_config(2, model_uri, database_url, wrk_duration) if real_path else None),
                 fatal=False),
        _guarded(lambda: _quality(directory, machine, dataset, seeds, True, None), fatal=False),
        _guarded(lambda: _compliance(directory, machine, url, None, 2, 40, None), fatal=False),
    ]
    if any(results):
        _guarded(lambda: _report(directory))
    if not all(results):
        raise typer.Exit(1)


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory holding benchmark JSON files.", file_okay=False)],
) -> None:
    """Rebuild report.md and report.html of a run directory from its JSON files."""
    if not run_dir.is_dir():
        _fail(f"RUN_DIR: {run_dir} is not a directory")
    _guarded(lambda: _report(run_dir))
