"""A worker computes at most `compute_threads` lists at once; the rest wait their turn (and all are served)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest


def peak_overlap(client, users: list[str], requests: int = 8) -> int:
    """Send `requests` lists at once; the most pipeline runs that were in progress together."""
    pipeline = client.app.state.services.pipeline
    original = pipeline.run
    lock = threading.Lock()
    active = peak = 0

    def slow_run(*args, **kwargs):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.05)  # long enough that runs allowed to overlap do
            return original(*args, **kwargs)
        finally:
            with lock:
                active -= 1

    pipeline.run = slow_run
    try:
        with ThreadPoolExecutor(requests) as pool:
            responses = list(pool.map(lambda i: client.post("/v1/recommendations",
                                                            json={"user_id": users[i % len(users)], "k": 10}),
                                      range(requests)))
    finally:
        pipeline.run = original
    assert [r.status_code for r in responses] == [200] * requests, [r.text for r in responses if r.status_code != 200]
    return peak


@pytest.mark.parametrize("threads", [1, 4])
def test_a_worker_computes_at_most_compute_threads_lists_at_once(client_factory, trained, threads):
    bundle, _ = trained
    users = list(bundle.user_index)[:5]  # known users: the whole personalized pipeline
    peak = peak_overlap(client_factory(compute_threads=threads), users)
    if threads == 1:
        assert peak == 1
    else:
        assert 1 < peak <= threads


def test_compute_threads_is_validated(make_settings):
    with pytest.raises(ValueError, match="compute_threads"):
        make_settings(compute_threads=0)
