"""Art. 28 (draft 24) (auditor/articles/log.py): served lists retrievable, the chain verifies, the verify
endpoint guarded."""

from __future__ import annotations

from auditor.articles.log import check_log
from auditor.articles.user_controls import Replay
from tests.auditor.builders import ex, page, rotating


# --- Art. 28 (draft 24) log -------------------------------------------------------------------------------------
def test_log_fails_on_an_unretrievable_list_a_broken_chain_or_an_open_verify_endpoint():
    served = page(rotating(0, 2))
    found = Replay(served, ex(body=served))
    verify_ok = ex(path="/v1/admin/logs/verify", body={"ok": True, "records": 10})
    refused = ex(path="/v1/admin/logs/verify", status=401, body={"detail": "token"})
    assert check_log([found], verify_ok, refused).passed
    lost = Replay(served, ex(status=404, body={"detail": "no list"}))
    assert not check_log([found, lost], verify_ok, refused).passed
    broken = ex(path="/v1/admin/logs/verify", body={"ok": False, "first_bad": {"line": 3}})
    assert not check_log([found], broken, refused).passed
    assert not check_log([found], verify_ok, verify_ok).passed
