"""Recommendation service log store (Art. 28 (draft 24): keep logs >= six months and produce them on request;
Art. 29 (draft 25): personal information stays confidential during inspection).

Append-only, keyed hash-chained JSON Lines segments per writer stream, sealed on roll/close;
`verify` finds tampering, `purge` enforces retention, `export` produces pseudonymised evidence
with a proof, `compact`/`query` serve inspections. CLI: `compliance.logstore.cli:app`.
"""

from compliance.logstore.config import DEV_HMAC_KEY, MIN_RETENTION_DAYS, LogConfig
from compliance.logstore.export import ExportResult, export, pseudonym
from compliance.logstore.query import CompactResult, compact, query
from compliance.logstore.retention import purge
from compliance.logstore.segment import LogStoreError, LogStoreUnavailable
from compliance.logstore.store import LogStore, Receipt, lookup, new_request_id, request_id_time
from compliance.logstore.verify import Problem, VerifyReport, repair_dead_streams, verify

__all__ = [
    "DEV_HMAC_KEY",
    "MIN_RETENTION_DAYS",
    "CompactResult",
    "ExportResult",
    "LogConfig",
    "LogStore",
    "LogStoreError",
    "LogStoreUnavailable",
    "Problem",
    "Receipt",
    "VerifyReport",
    "compact",
    "export",
    "lookup",
    "new_request_id",
    "pseudonym",
    "purge",
    "query",
    "repair_dead_streams",
    "request_id_time",
    "verify",
]
