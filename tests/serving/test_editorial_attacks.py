"""The flexible front screen ("at least 2 editorial items in positions 1-10") when a tired operator
empties what it draws from, over a real socket: a feature-library entry that matches every item
blocks the whole editorial pool (and everything else). No list may become a 500 or carry a blocked
item, for an adult or a minor, on any surface (an empty page owes no editorial item), and once the
entry is removed the lists come back with their editorial items.
(The pool partly or wholly empty on a full page: tests/compliance/test_policy.py and
tests/recsys/test_rerank.py, properties over random candidate sets.)"""

from __future__ import annotations


import httpx
import polars as pl
import pytest

from tests.conftest import ADMIN

SURFACES = ("home", "feed", "related", "trending")


@pytest.fixture
def site(daytime_site):
    return daytime_site


def lists(http: httpx.Client, user_id: str) -> dict[str, dict]:
    out = {}
    for surface in SURFACES:
        response = http.post("/v1/recommendations", json={"user_id": user_id, "surface": surface, "k": 10})
        assert response.status_code == 200, (surface, response.status_code, response.text[:300])
        out[surface] = response.json()
    trending = http.get("/v1/trending", params={"user_id": user_id})
    assert trending.status_code == 200, trending.text[:300]
    out["GET /v1/trending"] = trending.json()
    return out


def test_an_editorial_pool_blocked_whole_makes_no_list_fail(site, data, trained):
    bundle, _ = trained
    adult = data.users.filter(pl.col("age") >= 30)["user_id"].sort()[0]
    minor = data.users.filter(pl.col("age").is_between(12, 15))["user_id"].sort()[0]
    with httpx.Client(base_url=site.url, timeout=60) as http:
        added = http.post("/v1/admin/features", headers=ADMIN,
                          json={"kind": "regex", "pattern": ".", "category": "other", "note": "a tired operator's regex"})
        assert added.status_code == 201, added.text
        assert added.json()["matched_items"] == bundle.items.height
        for user_id in (adult, minor):
            for name, body in lists(http, user_id).items():
                assert body["items"] == [], f"{name} served a blocked item to {user_id}"
        assert http.delete(f"/v1/admin/features/{added.json()['id']}", headers=ADMIN).status_code == 200
        home = http.post("/v1/recommendations", json={"user_id": adult, "surface": "home", "k": 10}).json()
    editorial = [item for item in home["items"] if item.get("slot") == "mainstream"]
    assert len(editorial) >= 2, home["items"]
