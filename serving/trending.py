"""The hot list on the server (Art. 11, Art. 14 (draft 13); Art. 28 (draft 24) logs; the 2024-25 hot-list campaign: hot-list logs
kept and verifiable).

`take_snapshot` computes one hot list for an audience band from the state store (the window's
events received by now, the engaging accounts' facts), records what the audience may not see and
the manual changes in force, and appends the `TrendingSnapshot` to the tamper-evident log (kept
>= 180 days with every other record) before any list is served from it. `verify_snapshots` reads
snapshots and the lists served from them back from the log, re-reads their events from the state
store and recomputes each: one line per mismatch (`recsys trending verify`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from compliance.logstore import LogStore, new_request_id, query
from compliance.trending import TrendingConfig
from compliance.trending_snapshot import (
    SERVED_KIND,
    SNAPSHOT_KIND,
    AccountFacts,
    EventsRef,
    Exclusion,
    ManualChange,
    TrendingSnapshot,
    compare,
    events_digest,
    events_frame,
    outputs,
    recompute,
    verify_served,
)
from served.catalog import Catalog
from served.path import SharedState
from served.query import Audience
from serving.state.store import StateStore

TOP_N = 100  # ranked items kept per snapshot: the largest k GET /v1/trending serves
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- taking a snapshot ---------------------------------------------------------------------------------
def take_snapshot(store: StateStore, logstore: LogStore, catalog: Catalog, shared: SharedState, audience: Audience,
                  config: TrendingConfig, now: datetime) -> TrendingSnapshot:
    """Compute the hot list for `audience`'s band at `now` and log it as a snapshot (before serving)."""
    since = now - timedelta(hours=config.window_hours)
    rows = store.trending_events(since, received_by=now)
    events = events_frame(rows)
    eligible = audience.eligible(shared.blocked_items, catalog.age_rating, shared.fraud_risk)
    snapshot = TrendingSnapshot(
        snapshot_id=new_request_id(),
        as_of=now,
        config=config,
        top_n=TOP_N,
        max_age_rating=audience.max_age_rating,
        model_version=str(catalog.model_version),
        events=EventsRef(window_start=since, received_by=now, count=events.height, digest=events_digest(events),
                         boundary_event_ids=sorted(r["event_id"] for r in rows if r["received_at"] == now)),
        accounts=account_facts(store, catalog, sorted(set(events.get_column("user_id").to_list())), since, now),
        exclusions=exclusions(catalog, shared, audience, eligible, events.get_column("item_id").unique().to_list()),
        manual_changes=manual_changes(catalog, shared, eligible),
    )
    snapshot = snapshot.model_copy(update=outputs(recompute(snapshot, events)))
    logstore.append(SNAPSHOT_KIND, {"snapshot_id": snapshot.snapshot_id, "snapshot": snapshot.model_dump(mode="json")})
    return snapshot


def account_facts(store: StateStore, catalog: Catalog, user_ids: list[str], since: datetime,
                  received_by: datetime) -> AccountFacts:
    """Who the engaging accounts are: creation time, distinct items in stored events before the window
    (received by `received_by`), and items in the model's training data."""
    bundle = catalog.bundle
    created_us: list[int | None] = []
    prior_events: list[int] = []
    trained: list[int] = []
    for row in store.accounts(user_ids, before=since, received_by=received_by):
        created_us.append(_epoch_us(row["created_at"]))
        prior_events.append(int(row["prior_events_items"]))
        index = bundle.user_index.get(row["user_id"])
        trained.append(len(bundle.user_seen(index)) if index is not None else 0)
    return AccountFacts(user_id=user_ids, created_us=created_us, prior_event_items=prior_events,
                        prior_trained_items=trained)


def exclusions(catalog: Catalog, shared: SharedState, audience: Audience, eligible: np.ndarray,
               item_ids: list[str]) -> list[Exclusion]:
    """The event items this audience may not see, each with the first reason that applies."""
    index = catalog.bundle.item_index
    block_ids = {str(i.item_id): i.id for i in shared.interventions if i.kind == "block" and i.item_id is not None}
    feature = shared.feature_match.blocked if shared.feature_match is not None else None
    out = []
    for item_id in sorted(item_ids):
        position = index.get(item_id)
        if position is None:
            out.append(Exclusion(item_id=item_id, reason="not_in_catalog"))
        elif not eligible[position]:
            if catalog.flagged[position]:
                reason = "flagged"
            elif feature is not None and feature[position]:
                reason = "feature_library"
            elif item_id in block_ids:
                reason = f"intervention:{block_ids[item_id]}"
            elif audience.elderly and shared.fraud_risk is not None and shared.fraud_risk[position]:
                reason = "fraud_risk:elderly_mode"  # Art. 19
            else:
                reason = f"age_rating>{audience.max_age_rating}"
            out.append(Exclusion(item_id=item_id, reason=reason))
    return out


def manual_changes(catalog: Catalog, shared: SharedState, eligible: np.ndarray) -> list[ManualChange]:
    """Pins on the trending surface (withheld when the audience may not see the item) and blocks."""
    index = catalog.bundle.item_index
    pins = sorted((i for i in shared.interventions
                   if i.kind == "pin" and i.surface == "trending" and str(i.item_id) in index),
                  key=lambda i: i.position or 0)
    changes = [ManualChange(id=p.id, kind="pin", item_id=str(p.item_id), position=p.position, operator=p.operator,
                            reason=p.reason, applied=bool(eligible[index[str(p.item_id)]])) for p in pins]
    changes += [ManualChange(id=b.id, kind="block", item_id=str(b.item_id), operator=b.operator, reason=b.reason)
                for b in shared.interventions if b.kind == "block" and b.item_id is not None]
    return changes


def _epoch_us(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return (moment - EPOCH) // timedelta(microseconds=1)


# -- verifying -----------------------------------------------------------------------------------------
@dataclass
class VerifyOutcome:
    """What `verify_snapshots` found: snapshots and served lists checked, one line per mismatch, and
    log records that could not be read."""

    snapshots: int = 0
    served: int = 0
    mismatches: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.unreadable


def verify_snapshot(store: StateStore, snapshot: TrendingSnapshot, served: list[dict[str, Any]]) -> list[str]:
    """Recompute one snapshot from the stored events: one line per difference (none: it reproduces)."""
    ref = snapshot.events
    boundary = set(ref.boundary_event_ids)
    rows = [r for r in store.trending_events(ref.window_start, received_by=ref.received_by)
            if r["received_at"] != ref.received_by or r["event_id"] in boundary]
    events = events_frame(rows)
    sid = snapshot.snapshot_id
    problems = []
    if events_digest(events) != ref.digest:
        problems.append(f"{sid}: events: {events.height} stored now, {ref.count} when computed (digest differs)")
    stored = {r["user_id"]: (_epoch_us(r["created_at"]), int(r["prior_events_items"]))
              for r in store.accounts(snapshot.accounts.user_id, before=ref.window_start, received_by=ref.received_by)}
    facts = snapshot.accounts.rows()
    differing = sorted(u for u in facts if stored.get(u) != facts[u])
    if differing:
        problems.append(f"{sid}: account facts: {len(differing)} differ from the state store (e.g. {differing[0]}: "
                        f"logged {facts[differing[0]]}, stored {stored.get(differing[0])})")
    result = recompute(snapshot, events)
    problems += [f"{sid}: {line}" for line in compare(snapshot, result)]
    for record in served:
        line = verify_served(snapshot, result, record.get("items") or [])
        if line is not None:
            problems.append(f"{sid}: served list {record.get('request_id')}: {line}")
    erased = sorted((at, user) for user, at in store.history_erasures(snapshot.accounts.user_id).items()
                    if at > ref.received_by)
    if problems and erased:  # still a mismatch: the events are not there to recompute from, whoever removed them
        at, user = erased[0]
        problems.append(f"{sid}: {len(erased)} of its accounts erased their history since it was computed (PIPL Art. 47; "
                        f"first {user} at {at.isoformat()}): their events cannot be re-read, which the differences "
                        "above may come from; the logged snapshot is the record of what was computed")
    return problems


def read_snapshots(log_dir: Path, start: datetime | None = None, end: datetime | None = None,
                   snapshot_id: str | None = None) -> tuple[list[TrendingSnapshot], dict[str, list[dict[str, Any]]], list[str]]:
    """Snapshots logged in [start, end) (or the one `snapshot_id`), the served lists that name each,
    and the records that could not be read (skipped and reported, never fatal)."""
    serve_end = None if end is None else end + timedelta(minutes=30)  # lists served from a snapshot come after it
    snapshots: list[TrendingSnapshot] = []
    unreadable: list[str] = []
    for row in query(log_dir, start=start, end=end, kind=SNAPSHOT_KIND).iter_rows(named=True):
        try:
            data = json.loads(row["extra"] or "{}")
            if snapshot_id is not None and data.get("snapshot_id") != snapshot_id:
                continue
            snapshots.append(TrendingSnapshot.model_validate(data["snapshot"]))
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            unreadable.append(f"log {row['stream']}#{row['seq']}: unreadable snapshot ({' '.join(str(exc).split())[:200]})")
    wanted = {s.snapshot_id for s in snapshots}
    served: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in query(log_dir, start=start, end=serve_end, kind=SERVED_KIND).iter_rows(named=True):
        try:
            extra = json.loads(row["extra"] or "{}")
            items = json.loads(row["items"] or "[]")
        except ValueError:
            unreadable.append(f"log {row['stream']}#{row['seq']}: unreadable served list")
            continue
        if extra.get("snapshot_id") in wanted:
            served[extra["snapshot_id"]].append({"request_id": row["request_id"], "items": items})
    return snapshots, served, unreadable


def verify_snapshots(store: StateStore, log_dir: Path, start: datetime | None = None, end: datetime | None = None,
                     snapshot_id: str | None = None, progress: Callable[[str], None] | None = None) -> VerifyOutcome:
    """Recompute every snapshot logged in [start, end) (or the one `snapshot_id`) and every list served from it."""
    snapshots, served, unreadable = read_snapshots(log_dir, start, end, snapshot_id)
    outcome = VerifyOutcome(unreadable=unreadable)
    for snapshot in snapshots:
        lists = served.get(snapshot.snapshot_id, [])
        problems = verify_snapshot(store, snapshot, lists)
        outcome.snapshots += 1
        outcome.served += len(lists)
        outcome.mismatches += problems
        if progress is not None:
            progress(f"{snapshot.snapshot_id} {'ok' if not problems else 'MISMATCH'}: as of {snapshot.as_of.isoformat()}, "
                     f"{snapshot.events.count} events, {len(snapshot.items)} items, {len(lists)} lists served")
    return outcome
