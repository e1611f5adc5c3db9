"""Benchmark of the recommendation log store (Art. 28 (draft 24)): append throughput and inspection query time.

    python -m benchmarks.logstore_bench --records 1000000     # default
    python -m benchmarks.logstore_bench --records 10000000    # the full figure (Parquet written directly)

Prints appends/s for fsync "group" and "always" with 1 and 4 threads (~1.9 KB records), the
latency of `append_async`, then the time of "all lists served to one user in one month" after
compacting N records spread over ~100 days.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from compliance.logstore.config import LogConfig
from compliance.logstore.query import ROW_GROUP_SIZE, SCHEMA, compact, query
from compliance.logstore.segment import SegmentName, parquet_path
from compliance.logstore.store import LogStore, new_request_id

BENCH_KEY = "benchmark-key-not-secret-0123456789"
DAYS = 100
FIRST_DAY = date(2025, 1, 1)
USERS = 50_000


def sample_record(user_id: int, rng: random.Random) -> dict:
    """A recommendation record shaped like the serving layer's (~1.9 KB as JSON)."""
    return {
        "request_id": new_request_id(),
        "user_id": str(user_id),
        "surface": "home",
        "page": 1,
        "mode": "personalized",
        "model_version": "als-ranker-v12",
        "index_build_id": "idx-20250101-01",
        "policy_hash": "9f2c1e0d7a6b5c4d",
        "candidates": {"faiss": 200, "popular": 50, "mainstream": 20, "trending": 20},
        "items": [
            {
                "item_id": str(rng.randrange(1, 1700)),
                "position": position,
                "slot": "mainstream" if position < 2 else "organic",
                "score": round(rng.random(), 6),
                "reason": {"code": "similar_history", "text": "Because you watched Toy Story (1995)"},
            }
            for position in range(10)
        ],
        "policies": ["dedup", "dispersal:3/5", "mainstream_slots:2"],
        "violations": [],
        "request": {"user_id": str(user_id), "surface": "home", "page": 1, "n": 10},
    }


def measure_appends(directory: Path, fsync: str, threads: int, total: int) -> float:
    """Appends per second for `total` records spread over `threads` threads."""
    config = LogConfig(dir=directory, fsync=fsync, hmac_key=BENCH_KEY, segment_max_records=100_000)
    rng = random.Random(1)
    records = [sample_record(rng.randrange(USERS), rng) for _ in range(min(total, 2000))]
    store = LogStore(config, f"bench-{fsync}-{threads}")
    per_thread = total // threads

    def work() -> None:
        for i in range(per_thread):
            store.append("recommendation", records[i % len(records)])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    store.close()
    return per_thread * threads / elapsed


def measure_async_latency(directory: Path, calls: int) -> tuple[float, float]:
    """p50 and p99 (microseconds) of append_async with fsync "group", called from an event loop."""
    config = LogConfig(dir=directory, hmac_key=BENCH_KEY)
    rng = random.Random(2)
    record = sample_record(1, rng)
    store = LogStore(config, "bench-async")
    timings: list[float] = []

    async def run() -> None:
        for _ in range(calls):
            started = time.perf_counter()
            await store.append_async("recommendation", record)
            timings.append((time.perf_counter() - started) * 1e6)

    asyncio.run(run())
    store.close()
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99)]


def fill_by_appending(directory: Path, records: int) -> None:
    """Append `records` records through LogStore with a clock spread over DAYS days."""
    start_ns = int(datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC).timestamp() * 1e9)
    step_ns = DAYS * 86_400 * 10**9 // records
    counter = iter(range(records * 2))
    clock = lambda: start_ns + next(counter) * step_ns  # noqa: E731 - one read per append (+1 per roll)
    config = LogConfig(dir=directory, hmac_key=BENCH_KEY, segment_max_records=100_000)
    rng = random.Random(3)
    pool = [sample_record(u, rng) for u in range(2000)]
    store = LogStore(config, "bench-fill", clock=clock)
    for i in range(records):
        record = dict(pool[i % len(pool)])
        record["user_id"] = str(rng.randrange(USERS))
        store.append("recommendation", record)
    store.close()


def fill_parquet_directly(directory: Path, records: int) -> None:
    """Write compacted-layout Parquet (one file per day, rows sorted by user) without JSONL."""
    rng = np.random.default_rng(4)
    per_day = records // DAYS
    item_prefix = '{"item_id":"'
    item_suffixes = [
        '","position":%d,"reason":{"code":"similar_history","text":"Because you watched Toy Story '
        '(1995)"},"score":0.5,"slot":"organic"}' % position
        for position in range(10)
    ]
    for day_index in range(DAYS):
        day = FIRST_DAY + timedelta(days=day_index)
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        offsets = np.sort(rng.integers(0, 86_400 * 10**6, per_day))
        item_ids = [pl.Series(rng.integers(1, 1700, per_day)).cast(pl.Utf8) for _ in range(10)]
        frame = pl.DataFrame(
            {
                "stream": "bench-direct",
                "seq": np.arange(day_index * per_day + 1, (day_index + 1) * per_day + 1),
                "ts": pl.Series(int(day_start.timestamp()) * 10**6 + offsets).cast(pl.Datetime("us", "UTC")),
                "kind": "recommendation",
                "request_id": pl.Series(rng.integers(0, 2**62, per_day)).cast(pl.Utf8),
                "user_id": pl.Series(rng.integers(0, USERS, per_day)).cast(pl.Utf8),
                "surface": "home",
                "mode": "personalized",
                "model_version": "als-ranker-v12",
                "index_build_id": "idx-20250101-01",
                "policy_hash": "9f2c1e0d7a6b5c4d",
                "page": 1,
                "n_items": 10,
                "items": pl.select(
                    pl.concat_str(
                        [pl.lit("[")]
                        + [
                            part
                            for k, series in enumerate(item_ids)
                            for part in (
                                pl.lit(("," if k else "") + item_prefix),
                                pl.lit(series),
                                pl.lit(item_suffixes[k]),
                            )
                        ]
                        + [pl.lit("]")]
                    )
                ).to_series(),
                "candidates": '{"faiss":200,"mainstream":20,"popular":50,"trending":20}',
                "policies": '["dedup","dispersal:3/5","mainstream_slots:2"]',
                "violations": "[]",
                "request": '{"n":10,"page":1,"surface":"home"}',
                "extra": None,
                "hash": "0" * 64,
            }
        ).select([pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])
        frame = frame.sort(["user_id", "ts"])
        target = parquet_path(directory, SegmentName("bench-direct", day_index, day_start))
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(target, compression="zstd", row_group_size=ROW_GROUP_SIZE, statistics=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records for the query part")
    parser.add_argument("--append-records", type=int, default=100_000, help="records per append run")
    parser.add_argument(
        "--direct-parquet",
        action="store_true",
        help="write the query data as Parquet directly (automatic above 2M records)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="logstore-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"work dir: {work}")
        for fsync, total in (("group", args.append_records), ("always", max(args.append_records // 50, 200))):
            for threads in (1, 4):
                rate = measure_appends(work / f"append-{fsync}-{threads}", fsync, threads, total)
                print(f"append fsync={fsync:<6} threads={threads}: {rate:>10,.0f} appends/s ({total:,} records)")
        p50, p99 = measure_async_latency(work / "async", 5000)
        print(f"append_async fsync=group (inline write): p50 {p50:.0f} us, p99 {p99:.0f} us")

        data_dir = work / "query"
        direct = args.direct_parquet or args.records > 2_000_000
        started = time.perf_counter()
        if direct:
            fill_parquet_directly(data_dir, args.records)
            print(
                f"query data: {args.records:,} records written directly as compacted Parquet "
                f"(append path skipped for speed) in {time.perf_counter() - started:.1f}s"
            )
        else:
            fill_by_appending(data_dir, args.records)
            appended = time.perf_counter() - started
            started = time.perf_counter()
            result = compact(data_dir, BENCH_KEY)
            print(
                f"query data: {args.records:,} records appended in {appended:.1f}s, compacted to "
                f"{len(result.written)} Parquet files in {time.perf_counter() - started:.1f}s"
            )
        march = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
        timings = []
        rows = 0
        for user in (17, 4242, 31337, 49999, 123):
            started = time.perf_counter()
            frame = query(data_dir, user_id=user, start=march[0], end=march[1])
            timings.append(time.perf_counter() - started)
            rows += frame.height
        print(
            f"query one user, March 2025, over {args.records:,} records: median "
            f"{statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms "
            f"({rows / len(timings):.0f} rows per user)"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
