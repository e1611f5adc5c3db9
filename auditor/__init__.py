"""The black-box compliance audit (Art. 9, Art. 11, Art. 12, Art. 17 (draft 15), Art. 18 (draft 16), Art. 22 (draft 26), Art. 26 (draft 22), Art. 28 (draft 24) of the Provisions):
a client of the HTTP API (docs/API.md) that drives a running server as an inspector would and
checks each article with counts. It imports nothing of the server's code, so it audits any server
that speaks the API, and a mistake in the server's reading of a rule cannot hide itself.

`config` (what to ask) ► `client` (the only way in: recorded HTTP exchanges) ► `articles/` (per
group of articles: the trial that drives the server and the checks over what it recorded) ►
`run` (the whole audit) ► `report` (results, JSON) ► `cli` (`recsys audit`).
"""

from auditor.config import AuditConfig, AuditError
from auditor.report import AuditReport, CheckResult
from auditor.run import run_audit

__all__ = ["AuditConfig", "AuditError", "AuditReport", "CheckResult", "run_audit"]
