"""Compliance benchmark: the black-box audit (`auditor.run_audit`) against a running server,
article by article. Starts `recsys serve` on a free loopback port with its own state database and
log directory (the registered model of the current MLflow store), or audits the server at --url.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.latency import BenchmarkError, say
from benchmarks.server import ServerError, ServerProcess


@dataclass(frozen=True)
class ComplianceConfig:
    url: str | None = None  # audit this server instead of starting one
    admin_token: str | None = None  # for --url; default RECSYS_ADMIN_TOKEN, else the dev token
    workers: int = 2
    users: int = 4
    pages: int = 3
    lists: int = 40
    seed: int = 7
    user_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise BenchmarkError(f"--workers: must be >= 1, got {self.workers}")


def _audit(url: str, config: ComplianceConfig, admin_token: str):
    from auditor import AuditConfig, AuditError, run_audit

    try:
        audit_config = AuditConfig(users=config.users, pages=config.pages, lists=config.lists, seed=config.seed,
                                   user_ids=config.user_ids, admin_token=admin_token)
        return run_audit(url, audit_config)
    except AuditError as exc:
        raise BenchmarkError(f"audit of {url}: {exc}") from None


def run(config: ComplianceConfig, out_dir: Path, machine: dict | None = None, server_env: dict[str, str] | None = None) -> dict:
    """Audit a server (started here unless `config.url`); writes out_dir/compliance.json and returns it.

    `server_env` adds environment variables for the started server (e.g. another MLflow store)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    server_info: dict = {"started_here": config.url is None}
    if config.url is not None:
        token = config.admin_token or os.environ.get("RECSYS_ADMIN_TOKEN") or "dev-admin-token"
        say(f"compliance: auditing {config.url}")
        report = _audit(config.url, config, token)
    else:
        try:
            with ServerProcess(env=server_env, workers=config.workers) as server:
                say(f"compliance: auditing a fresh server at {server.url} ({config.workers} workers)")
                report = _audit(server.url, config, server.admin_token)
                server_info.update(workers=config.workers, peak_rss_mb=server.peak_rss(),
                                   failed_starts=len(server.failed_starts))
        except ServerError as exc:
            raise BenchmarkError(f"compliance: {exc}") from None
    audit = report.to_dict()
    exchanges = audit.pop("exchanges", [])
    result = {
        "benchmark": "compliance",
        "started_at": started_at,
        "duration_s": round(time.perf_counter() - started, 1),
        "config": {k: v for k, v in asdict(config).items() if k != "admin_token"},
        "server": server_info,
        "machine": machine,
        "passed": report.passed,
        "audit": audit,
    }
    (out_dir / "compliance.json").write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    (out_dir / "compliance-exchanges.json").write_text(json.dumps(exchanges, indent=1, default=str))
    say(f"compliance: {audit['totals']['checks_passed']} of {audit['totals']['checks']} checks passed "
        f"({audit['totals']['requests']} requests)")
    return result
