"""Prometheus metrics of the service: requests, per-stage latency, modes, policy violations.

With several uvicorn workers, `recsys serve` sets PROMETHEUS_MULTIPROC_DIR so /metrics
aggregates every worker (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import functools
import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

REQUESTS = Counter("recsys_requests_total", "HTTP requests by route and status", ["route", "status"])
RECOMMENDATIONS = Counter("recsys_recommendations_total", "Lists served by surface and mode", ["surface", "mode"])
STAGE_SECONDS = Histogram("recsys_stage_seconds", "Time spent per request-path stage", ["stage"], buckets=STAGE_BUCKETS)
VIOLATIONS = Counter("recsys_policy_violations_total", "Policy constraints that could not be met", ["rule"])
UNREADABLE = Gauge("recsys_unreadable_records", "Stored interventions or feature-library entries skipped as unreadable",
                   multiprocess_mode="max")
UNREADABLE_READS = Counter("recsys_unreadable_reads_total", "Per-user stored records skipped as unreadable when read",
                           ["kind"])
ERRORS = Counter("recsys_unexpected_errors_total", "Requests that failed with an unexpected error (500)", ["route"])
USAGE_WRITE_FAILURES = Counter("recsys_minors_usage_write_failures_total",
                               "Minors' activities served but not counted into their usage (database error, logged)")
REFUSALS = Counter("recsys_refusals_total", "Requests refused by minors mode or an unavailable log", ["code"])


@functools.cache
def stage_seconds(stage: str):
    """The `STAGE_SECONDS` child of one stage, looked up once: `labels()` validates and hashes its
    arguments on every call, and each list observes every stage."""
    return STAGE_SECONDS.labels(stage)


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics (all workers when in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
