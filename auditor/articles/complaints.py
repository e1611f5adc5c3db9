"""Art. 22 (draft 26) of the Provisions, complaints: a complaint about a served list is accepted
with due dates, can be followed by its user alone, and moves received -> acknowledged -> resolved.
The audit's complaint stays on the server, resolved and marked as an audit test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from auditor.client import Exchange, Inspector, said
from auditor.report import CheckResult, result


@dataclass
class ComplaintTrial:
    """What the complaint trial saw."""

    user_id: str | None = None
    subject_id: str | None = None
    resolution: str = ""
    filed: Exchange | None = None
    fetched: Exchange | None = None
    foreign: Exchange | None = None  # the same complaint asked for by another user
    acknowledged: Exchange | None = None
    resolved: Exchange | None = None
    final: Exchange | None = None


def other_user(user: str, users: Sequence[str]) -> str:
    """Someone other than `user`: another known user, else an id nobody has."""
    return next((u for u in users if u != user), f"{user}-audit-other")


def complaint_trial(inspector: Inspector, served: Sequence[dict[str, Any]], users: Sequence[str]) -> ComplaintTrial:
    """File a complaint about a served list, follow it, and have it acknowledged and resolved."""
    first = next((b for b in served if b.get("request_id") and b.get("user_id")), None)
    if first is None:
        return ComplaintTrial()
    user = str(first["user_id"])
    trial = ComplaintTrial(user_id=user, subject_id=str(first["request_id"]),
                           resolution="Compliance audit test case: no action needed.")
    trial.filed = inspector.request("POST", "/v1/complaints", json={
        "kind": "complaint", "subject_type": "request", "subject_id": trial.subject_id, "user_id": user,
        "text": "Automated compliance audit: test complaint about a served list; resolve without action.",
    })
    complaint_id = trial.filed.data.get("id") if trial.filed.status == 201 else None
    if complaint_id is None:
        return trial
    path = f"/v1/complaints/{quote(str(complaint_id), safe='')}"
    trial.fetched = inspector.request("GET", path, params={"user_id": user})
    trial.foreign = inspector.request("GET", path, params={"user_id": other_user(user, users)})
    admin = f"/v1/admin/complaints/{quote(str(complaint_id), safe='')}"
    trial.acknowledged = inspector.request("POST", f"{admin}/acknowledge", admin=True)
    trial.resolved = inspector.request("POST", f"{admin}/resolve", admin=True,
                                       json={"status": "resolved", "resolution": trial.resolution})
    trial.final = inspector.request("GET", path, params={"user_id": user})
    return trial


def _when(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_complaints(trial: ComplaintTrial) -> CheckResult:
    """Art. 22 (draft 26): a complaint about a served list is accepted (201) with due dates, can be followed
    by its user (404 for others), and moves received -> acknowledged -> resolved with the resolution."""
    failures: list[str] = []
    if trial.user_id is None or trial.subject_id is None:
        return result("Art. 22 (draft 26)", "complaints", ["no served list to complain about"], {}, ran=False)
    filed = trial.filed
    if filed is None or filed.status != 201:
        failures.append(f"filing: {said(filed)}, expected 201")
    else:
        data = filed.data
        ack, due = _when(data.get("acknowledge_due")), _when(data.get("resolve_due"))
        if data.get("status") != "received" or not data.get("id"):
            failures.append(f"filing: status {data.get('status')!r}, id {data.get('id')!r}; "
                            "expected 'received' and an id")
        if ack is None or due is None or ack > due:
            failures.append(f"filing: due dates acknowledge {data.get('acknowledge_due')!r}, "
                            f"resolve {data.get('resolve_due')!r}")
    steps = (("fetching it back", trial.fetched, 200, "received"),
             ("acknowledging", trial.acknowledged, 200, "acknowledged"),
             ("resolving", trial.resolved, 200, "resolved"),
             ("final state", trial.final, 200, "resolved"))
    for label, exchange, status, expected in steps:
        if exchange is None or exchange.status != status or exchange.data.get("status") != expected:
            got = exchange.data.get("status") if exchange is not None and exchange.status == status else None
            failures.append(f"{label}: {said(exchange)}"
                            + (f", status {got!r}, expected {expected!r}" if exchange and exchange.ok else ""))
    if trial.final is not None and trial.final.ok and trial.final.data.get("resolution") != trial.resolution:
        failures.append(f"final state: resolution {trial.final.data.get('resolution')!r}, "
                        f"expected {trial.resolution!r}")
    if trial.foreign is None or trial.foreign.status != 404:
        failures.append(f"another user reading it: {said(trial.foreign)}, expected 404")
    done = sum(1 for _, e, s, want in steps if e is not None and e.status == s and e.data.get("status") == want)
    counts = {"filed": int(filed is not None and filed.status == 201), "steps_ok": done, "steps": len(steps),
              "other_user_404": int(trial.foreign is not None and trial.foreign.status == 404)}
    notes = [f"complaint {filed.data.get('id') if filed is not None else None} by user {trial.user_id} about request "
             f"{trial.subject_id} stays on the server, resolved, marked as an audit test"]
    return result("Art. 22 (draft 26)", "complaints", failures, counts, notes)
