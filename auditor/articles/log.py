"""Art. 28 (draft 24) of the Provisions, the recommendation log: every list served to the audit can
be retrieved from it, its hash chain and seals verify, and verifying needs the admin token."""

from __future__ import annotations

from collections.abc import Sequence

from auditor.articles.user_controls import Replay
from auditor.client import Exchange, said
from auditor.report import CheckResult, result
from auditor.responses import where


def check_log(replays: Sequence[Replay], verify: Exchange | None, verify_unauthorized: Exchange | None) -> CheckResult:
    """Art. 28 (draft 24): every list served to the audit is in the log (retrievable by request id and user),
    the log's hash chain and seals verify, and the verify endpoint needs the admin token."""
    failures = [f"{where(r.served)}: not retrievable: {r.replay.summary()}" for r in replays if not r.replay.ok]
    if not replays:
        failures.append("no served list to look up")
    ok = verify is not None and verify.ok and verify.data.get("ok") is True
    if not ok:
        answered = verify is not None and verify.ok
        why = (verify.data.get("first_bad") or verify.data.get("summary")) if verify is not None and answered else None
        failures.append(f"GET /v1/admin/logs/verify: {said(verify, 'not requested')}"
                        + (f", ok={verify.data.get('ok')!r}, {why}" if verify is not None and answered else ""))
    guarded = verify_unauthorized is not None and verify_unauthorized.status == 401
    if not guarded:
        failures.append(f"GET /v1/admin/logs/verify without the token: "
                        f"{said(verify_unauthorized, 'not requested')}, expected 401")
    counts = {"served_lists": len(replays), "retrievable": sum(1 for r in replays if r.replay.ok), "verify_ok": int(ok),
              "log_records": verify.data.get("records", 0) if verify is not None else 0,
              "admin_token_required": int(guarded)}
    return result("Art. 28 (draft 24)", "recommendation log", failures, counts)
