"""The auditor's configuration and its HTTP client (auditor/config.py, auditor/client.py): bad
settings name their flag, a lost request is recorded rather than raised, and the request budget
holds."""

from __future__ import annotations

import pytest

from auditor.client import Inspector, check_base_url, user_path
from auditor.config import AuditConfig, AuditError
from tests.conftest import free_port


def test_config_and_url_errors_name_the_flag():
    with pytest.raises(AuditError, match="--pages"):
        AuditConfig(pages=0)
    with pytest.raises(AuditError, match="--user-ids"):
        AuditConfig(user_ids=("ok", "not ok"))
    with pytest.raises(AuditError, match="--url"):
        check_base_url("127.0.0.1:8000")
    assert check_base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


def test_inspector_records_lost_requests_and_stops_at_its_budget():
    inspector = Inspector(f"http://127.0.0.1:{free_port()}", AuditConfig(timeout_s=2.0))
    inspector.max_requests = 2
    try:
        assert inspector.request("GET", "/healthz").status == 0
        inspector.recommend("1", "home")
        with pytest.raises(AuditError, match="budget of 2"):
            inspector.request("GET", "/healthz")
    finally:
        inspector.close()
    assert all(e.error for e in inspector.exchanges)


def test_user_paths_quote_every_segment():
    assert user_path("a/b", "tags", "Sci Fi") == "/v1/users/a%2Fb/tags/Sci%20Fi"
