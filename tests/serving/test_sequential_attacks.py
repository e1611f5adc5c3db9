"""The sequential candidate source reads what a user engaged with (`StateStore.list_state`): a user
steering it toward items they must not get, over a real socket.

A minor clicks, likes and shares items rated above their band and items the dataset flags as
unsafe, with event times up to the clock skew ahead. Those events steer the sequence query (they
are the user's history), but no list on any surface or page, and no trending list, may then carry
an item above the band or a flagged item: the gate's exclusions hold for every source.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import polars as pl
import pytest

from tests.serving.conftest import DAYTIME

SURFACES = ("home", "feed", "related", "trending")


@pytest.fixture
def site(daytime_site):
    return daytime_site


def test_a_minors_engagement_with_forbidden_items_never_serves_them(site, data, trained):
    bundle, _ = trained
    minors = data.users.filter(pl.col("age").is_between(12, 15)).sort("user_id")
    known = [(u, a) for u, a in zip(minors["user_id"], minors["age"]) if u in bundle.user_index]  # their lists are personal
    minor_id, age = known[0]
    limit = site.services.settings.minors.max_age_rating(int(age))
    items = bundle.items
    rating = dict(zip(items["item_id"].to_list(), items["age_rating"].to_list()))
    flagged = set(items.filter(pl.col("flagged"))["item_id"].to_list())
    mature = items.filter((pl.col("age_rating") > limit) & ~pl.col("flagged"))["item_id"].to_list()[:15]
    bait = [*mature, *sorted(flagged)[:15]]
    assert len(mature) >= 5 and len(flagged) >= 5, "the synthetic data has items to bait with"
    ahead = DAYTIME + timedelta(minutes=4)
    events = [{"event_id": f"bait-{n}-{kind}", "user_id": minor_id, "item_id": item, "type": kind,
               "ts": (ahead if n % 2 else DAYTIME).isoformat()}
              for n, item in enumerate(bait) for kind in ("click", "like", "share")]
    served: list[str] = []
    with httpx.Client(base_url=site.url, timeout=60) as http:
        assert http.post("/v1/events", json={"events": events}).status_code == 200
        for surface in SURFACES:
            first = http.post("/v1/recommendations", json={"user_id": minor_id, "surface": surface, "k": 20})
            assert first.status_code == 200, first.text
            second = http.post("/v1/recommendations", json={"user_id": minor_id, "surface": surface, "k": 20, "page": 1,
                                                            "session_id": first.json()["session_id"]})
            assert second.status_code == 200, second.text
            served += [i["item_id"] for r in (first, second) for i in r.json()["items"]]
        trending = http.get("/v1/trending", params={"user_id": minor_id, "k": 50})
        assert trending.status_code == 200, trending.text
        served += [i["item_id"] for i in trending.json()["items"]]
    assert len(served) > 60
    assert not [i for i in served if i in flagged], "a flagged item the minor engaged with was served"
    assert not [i for i in served if rating[i] > limit], f"an item rated above {limit}+ was served to a minor"
