"""Where a served list's CPU goes, in process, on the registered model with its real users: the gate,
the served path, and the parts of the list's writes (the log record built, JSON-encoded, appended to
the hash chain; the page insert), each timed with this thread's CPU clock, so other load on a shared
machine does not count as work (it still slows the work down: compare runs of one moment).

    python -m benchmarks.write_stage [--requests N] [--database-url URL]

State: a fresh SQLite file (default) or the given database; a fresh log directory. Prints the mean
CPU milliseconds per list of each part, and the elapsed milliseconds of the gate and the served path
(their reads of the state database wait for it: round trips show there, not in CPU).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from compliance.logstore import LogConfig, new_request_id
from compliance.logstore.store import encode_record
from recsys.bundle import single_thread_inference
from recsys.config import core_settings
from recsys.registry import load_bundle
from serving.auth import AuthConfig
from serving.config import Settings
from serving.pipeline import RecommendationRequest
from serving.services import build_services

PARTS = ("gate", "served path", "log record built", "log record encoded", "log append (encode included)", "page insert")
WALL = "gate + served path, wall"  # elapsed, not CPU: what the state database's round trips cost


def measure(requests: int, database_url: str | None, warmup: int = 200) -> dict[str, float]:
    single_thread_inference()
    core = core_settings()
    bundle, version = load_bundle(f"models:/{core.model_name}@{core.model_alias}")
    workdir = Path(tempfile.mkdtemp(prefix="write-stage-"))
    settings = Settings(auth=AuthConfig(mode="development"), database_url=database_url or f"sqlite:///{workdir / 'state.db'}",
                        logs=LogConfig(dir=workdir / "logs", fsync="group"), admin_token="write-stage-benchmark",
                        filing_number="BENCHMARK")
    services = build_services(settings, bundle_loader=lambda uri: (bundle, version))
    pipeline = services.pipeline
    if pipeline is None:
        raise SystemExit(f"the model did not load: {services.model_error}")
    users = [str(u) for u in bundle.user_index]
    random.Random(0).shuffle(users)
    cpu = time.thread_time
    samples: dict[str, list[float]] = {part: [] for part in (*PARTS, WALL)}
    try:
        for i in range(warmup + requests):
            user = users[i % len(users)]
            w0, t0 = time.perf_counter(), cpu()
            request = RecommendationRequest(user, "feed", 0, 10, None)
            # the route's one read: the gate's and hydrate's state (so "gate" includes hydrate's read)
            audience, state = services.gate.admit_list_reading(user, services.clock(), pipeline.list_read(request),
                                                               route="benchmark", request_id="benchmark")
            t1 = cpu()
            recommendation = pipeline.run(request, audience, new_request_id(), state)
            t2, w2 = cpu(), time.perf_counter()
            record = recommendation.log_record()
            t3 = cpu()
            encode_record("recommendation", record)
            t4 = cpu()
            services.logstore.append("recommendation", record)
            t5 = cpu()
            pipeline.record(recommendation, audience.now)
            t6 = cpu()
            if i >= warmup:
                for part, ms in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                    samples[part].append(ms * 1e3)
                samples[WALL].append((w2 - w0) * 1e3)
    finally:
        services.gate.usage.close()
        services.logstore.close()
        services.store.engine.dispose()
    return {part: statistics.mean(values) for part, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000, help="timed lists (after 200 untimed)")
    parser.add_argument("--database-url", default=None, help="state database (default: a fresh SQLite file)")
    args = parser.parse_args()
    for part, ms in measure(args.requests, args.database_url).items():
        print(f"{part:30s} {ms:7.3f} ms {'elapsed' if part == WALL else 'CPU'} per list")


if __name__ == "__main__":
    main()
