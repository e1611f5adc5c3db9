"""The whole audit end to end: `recsys audit` against a real `recsys serve` over a socket passes
every article, writes its JSON report, and leaves the users' settings and tags as it found them."""

from __future__ import annotations

import json
import subprocess

import httpx
import polars as pl
import pytest

from recsys.schema import Dataset
from tests.conftest import ADMIN_TOKEN, RECSYS

pytestmark = pytest.mark.e2e


def _known_adults(synthetic_dir, n: int) -> list[str]:
    """Adults with a history: users whose lists are personalized."""
    data = Dataset.load(synthetic_dir)
    active = data.interactions.group_by("user_id").len().filter(pl.col("len") >= 20)["user_id"]
    adults = data.users.filter((pl.col("age") >= 18) & pl.col("user_id").is_in(active.to_list()))["user_id"]
    return [str(u) for u in adults.sort().head(n).to_list()]


def _state(url: str, users: list[str]) -> dict[str, tuple[object, set[str]]]:
    """Each user's settings and the names of their interest tags."""
    with httpx.Client(base_url=url, timeout=10) as client:
        return {u: (client.get(f"/v1/users/{u}/settings").json(),
                    {t["name"] for t in client.get(f"/v1/users/{u}/tags").json()["tags"]}) for u in users}


def test_recsys_audit_passes_a_real_server_and_restores_what_it_changed(server_factory, synthetic_dir, tmp_path):
    server = server_factory(workers=1)
    users = _known_adults(synthetic_dir, 3)
    before = _state(server.url, users)
    out = tmp_path / "audit.json"
    result = subprocess.run(
        [RECSYS, "audit", "--url", server.url, "--user-ids", ",".join(users), "--pages", "2", "--lists", "8",
         "--out", str(out)],
        env={**server.env, "RECSYS_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "audit PASSED" in result.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["passed"] and len(report["checks"]) == 12 and sorted(report["users"]) == sorted(users)
    assert {c["article"] for c in report["checks"]} == {"Art. 9", "Art. 11", "Art. 12", "Art. 17 (draft 15)", "Art. 18 (draft 16)",
                                                        "Art. 26 (draft 22)", "Art. 28 (draft 24)", "Art. 22 (draft 26)"}
    assert report["totals"]["lists_served"] > 0 and "admin_token" not in report["config"]
    assert _state(server.url, users) == before
