"""The whole audit: find known users, drive the server through each article's trial (restoring
every setting a trial changes), then run every check over what was recorded."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime

import httpx

from auditor.articles.complaints import check_complaints, complaint_trial, other_user
from auditor.articles.filing import check_filing
from auditor.articles.lists import (
    check_dedup,
    check_dispersal,
    check_explanations,
    check_front_screen,
    check_synthetic_labels,
    crawl,
    served_lists,
    sessions_from,
)
from auditor.articles.log import check_log
from auditor.articles.minors import check_minors, minors_trial
from auditor.articles.user_controls import (
    check_explanation_on_request,
    check_personalization_switch,
    check_tag_deletion,
    replay_all,
    switch_trial,
    tag_trial,
)
from auditor.client import REQUEST_ID_HEADER, Inspector, check_base_url
from auditor.config import DISCOVERY_IDS, AuditConfig, AuditError
from auditor.policy import ExpectedPolicy, expected_policy
from auditor.report import AuditReport
from auditor.responses import PERSONALIZED, items_of

SERVER_FIELDS = ("model_version", "policy_hash", "index_build_id", "model_uri", "filing_number", "status")


def discover_users(inspector: Inspector, config: AuditConfig) -> tuple[list[str], set[str]]:
    """Known users: the ids given, else the first `config.users` of 1..50 whose home list is
    personalized. Returns (users, those seen with a personalized list)."""
    personalized: set[str] = set()
    if config.user_ids:
        for user in config.user_ids:
            exchange = inspector.recommend(user, "home")
            if exchange.ok and exchange.data.get("mode") == PERSONALIZED:
                personalized.add(user)
        return list(config.user_ids), personalized
    found: list[str] = []
    for user in DISCOVERY_IDS:
        exchange = inspector.recommend(user, "home")
        if exchange.ok and exchange.data.get("mode") == PERSONALIZED:
            found.append(user)
            personalized.add(user)
            if len(found) >= config.users:
                break
    return found, personalized


def run_audit(base_url: str, config: AuditConfig | None = None, client: httpx.Client | None = None) -> AuditReport:
    """Audit the server at `base_url` over HTTP; `client` (e.g. FastAPI's TestClient) replaces the
    default httpx.Client. Raises AuditError when the server cannot be audited at all."""
    config = config or AuditConfig()
    base_url = check_base_url(base_url)
    started = datetime.now(UTC)
    inspector = Inspector(base_url, config, client)
    try:
        health = inspector.request("GET", "/healthz")
        if health.status == 0:
            raise AuditError(f"--url: cannot reach {base_url}: {health.error}")
        if not health.ok or health.data.get("ready") is False:
            why = f"{health.summary()} {health.data.get('error') or ''}".strip()
            raise AuditError(f"{base_url} is not ready to audit: {why}")
        transparency = inspector.request("GET", "/v1/transparency")
        page = inspector.request("GET", "/transparency")
        policy = expected_policy(transparency.data) if transparency.ok else ExpectedPolicy()

        rng = random.Random(config.seed)
        users, personalized = discover_users(inspector, config)
        order = list(users)
        rng.shuffle(order)
        crawl(inspector, order, config)
        switch = switch_trial(inspector, [u for u in order if u in personalized] or order, personalized)
        tags = tag_trial(inspector, order[2:] + order[:2], config)
        minor_user = next((u for u in reversed(order) if u != tags.user_id), order[0] if order else None)
        minors = minors_trial(inspector, minor_user, config)
        served = served_lists(inspector.exchanges)
        complaint = complaint_trial(inspector, served, order)
        replays = replay_all(inspector, served)
        foreign = [inspector.logged_list(str(b["request_id"]), other_user(str(b["user_id"]), order)) for b in served[:3]]
        verify = inspector.request("GET", "/v1/admin/logs/verify", admin=True)
        verify_unauthorized = inspector.request("GET", "/v1/admin/logs/verify")

        sessions = sessions_from(inspector.exchanges)
        checks = [
            check_dedup(sessions),
            check_dispersal(sessions, policy.dispersal_window, policy.dispersal_max, policy.dispersal_across_pages),
            check_explanations(served),
            check_front_screen(served, policy),
            check_personalization_switch(switch),
            check_tag_deletion(tags),
            check_explanation_on_request(replays, foreign),
            check_minors(minors),
            check_filing(inspector.exchanges, transparency, page),
            check_log(replays, verify, verify_unauthorized),
            check_complaints(complaint),
            check_synthetic_labels(served + [r.replay.data for r in replays if r.replay.ok]),
        ]
        statuses = Counter(str(e.status) for e in inspector.exchanges)
        totals = {
            "requests": len(inspector.exchanges), "by_status": dict(sorted(statuses.items())),
            "lists_served": len(served), "items_served": sum(len(items_of(b)) for b in served),
            "sessions": len(sessions), "checks": len(checks),
            "checks_passed": sum(c.passed for c in checks), "checks_failed": sum(not c.passed for c in checks),
        }
        notes = [] if users else ["no known user found: user ids 1..50 gave no personalized list; pass --user-ids"]
        if not transparency.ok:
            notes.append(f"policy read from defaults: {transparency.summary()}")
        return AuditReport(
            base_url=base_url, started_at=started.isoformat(), finished_at=datetime.now(UTC).isoformat(),
            server={key: health.data.get(key) for key in SERVER_FIELDS}, policy=asdict(policy), config=asdict(config),
            users=order, checks=checks, totals=totals, notes=notes,
            exchanges=[{"method": e.method, "path": e.path, "status": e.status,
                        "request_id": e.headers.get(REQUEST_ID_HEADER), "error": e.error} for e in inspector.exchanges],
        )
    finally:
        inspector.close()
