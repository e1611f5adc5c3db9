"""Minors' usage on the server (Art. 18 (draft 16)): read at admission, counted by the one writer.

The gate reads a minor's usage of the day and decides the request on it (curfew, budget); the
activity itself is counted once the list is built, by `RecommendationPipeline.serve`, in one of two
ways (`compliance.minors.UsageCharge.at_edge`):

- far from the budget (more than one activity's worth left), after the list is logged, by this
  worker's usage thread: the response does not wait for the write. The count is the atomic upsert
  (`StateStore.add_usage`), so workers and replicas counting at once lose no time; the gate's next
  read of the same user on this worker waits until the user's counts queued here are written
  (`settle`), so a user's requests on one worker always see their earlier ones;
- at the edge, before the list is released, with `StateStore.charge_usage`: counted only while the
  day's usage is still below the budget, else the request is refused. Concurrent requests admitted
  on the same read cannot each get a list beyond the budget: the database serialises their counts,
  and those counted after the budget is spent are refused.

The margin makes the deferred count safe: a queued count is written within milliseconds, and an
activity adds at most `activity_gap_cap_seconds` (concurrent ones: the time between them), so a
read that misses the counts still queued on other workers is off by less than the margin.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from datetime import date, datetime

from compliance import minors
from serving import metrics
from serving.state.store import StateStore

log = logging.getLogger("recsys.serving")

SETTLE_TIMEOUT_SECONDS = 5.0  # bounded: a stuck database cannot hold the gate forever
_STOP = object()


class UsageCounter:
    """A worker's reads and counts of minors' usage, with the queue of counts written after the response."""

    def __init__(self, store: StateStore, config: minors.MinorsConfig):
        self.store = store
        self.config = config
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending: Counter[str] = Counter()  # queued counts per user, not yet written
        self._written = threading.Condition()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False  # after `close`, counts are written at once (no thread outlives shutdown)

    def read(self, user_id: str, now: datetime) -> minors.UsageState | None:
        """The user's usage of the local day of `now`, after this worker's queued counts of the user."""
        self.settle(user_id)
        day = minors.local_day(now, self.config)
        return self.from_stored(day, self.store.usage_state(user_id, day))

    @staticmethod
    def from_stored(day: date, stored: tuple[datetime, float, datetime | None] | None) -> minors.UsageState | None:
        """The usage state of `day` from its stored row (`StateStore.usage_state`), None before any activity."""
        if stored is None:
            return None
        last, used, since = stored
        return minors.UsageState(day=day, last_activity=last, seconds_used=used, continuous_since=since)

    def charge_now(self, charge: minors.UsageCharge) -> bool:
        """Count the activity before anything is served, only while the budget is not spent; False: spent."""
        config = self.config
        return self.store.charge_usage(charge.user_id, charge.day, charge.moment, config.activity_gap_cap_seconds,
                                       config.activity_floor_seconds, charge.budget_seconds) is not None

    def charge_later(self, charge: minors.UsageCharge) -> None:
        """Count the activity on the usage thread; the caller does not wait for the write. After
        `close` (a response finishing during shutdown) it is written at once instead: a thread started
        then would be killed with the process, its count lost."""
        with self._start_lock:  # queued before `close` queues the stop, or written here: never both, never neither
            if not self._closed:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._write_queued, name="minors-usage", daemon=True)
                    self._thread.start()
                with self._written:
                    self._pending[charge.user_id] += 1
                self._queue.put(charge)
                return
        self._write(charge)

    def record(self, user_id: str, moments: list[datetime], now: datetime) -> None:
        """Count activities that are not requests for items (a minor's events), now, one atomic
        statement each, whatever the budget (they happened). A moment after `now` (the server's
        clock; a client's clock may run ahead) counts at `now`: a claimed future moment would become
        the day's last activity, and every list requested before it would count nothing."""
        config = self.config
        for moment in sorted(min(moment, now) for moment in moments):
            self.store.add_usage(user_id, minors.local_day(moment, config), moment,
                                 config.activity_gap_cap_seconds, config.activity_floor_seconds)

    def settle(self, user_id: str, timeout_s: float = SETTLE_TIMEOUT_SECONDS) -> None:
        """Wait until the counts of `user_id` queued on this worker are written (bounded)."""
        with self._written:
            if not self._pending[user_id]:
                return
            if not self._written.wait_for(lambda: not self._pending[user_id], timeout=timeout_s):
                log.error("usage counts of %s not written within %.0f s; deciding on the stored usage", user_id, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write every queued count, then stop the usage thread (at shutdown); counts queued later
        are written by their caller (`charge_later`). Counts still unwritten after `timeout_s` (a
        database that does not answer) are logged and counted as lost."""
        with self._start_lock:
            self._closed = True
            thread = self._thread
            if thread is None:
                return
            self._queue.put(_STOP)
        thread.join(timeout=timeout_s)
        if thread.is_alive():
            with self._written:
                lost = sum(self._pending.values())
            metrics.USAGE_WRITE_FAILURES.inc(lost)
            log.error("minors' usage: %d queued counts not written within %.0f s of shutdown", lost, timeout_s)
        self._thread = None

    def _write(self, charge: minors.UsageCharge) -> None:
        """Count one served activity; a failure is logged and counted as lost (the list was served)."""
        config = self.config
        try:
            self.store.add_usage(charge.user_id, charge.day, charge.moment, config.activity_gap_cap_seconds,
                                 config.activity_floor_seconds)
        except Exception:  # the worker goes on
            metrics.USAGE_WRITE_FAILURES.inc()
            log.exception("could not count usage of %s at %s", charge.user_id, charge.moment.isoformat())

    def _write_queued(self) -> None:
        while (charge := self._queue.get()) is not _STOP:
            assert isinstance(charge, minors.UsageCharge)
            try:
                self._write(charge)
            finally:
                with self._written:
                    self._pending[charge.user_id] -= 1
                    if not self._pending[charge.user_id]:
                        del self._pending[charge.user_id]
                    self._written.notify_all()
