"""Replay equality (issue 17): fixed requests served against a deterministic state give the lists
recorded in `golden/served_lists.json`, item for item, in order, with the same slots and reasons.

The golden file was written by the code before the request path was optimised; a change that
makes the path faster must leave every list as it was. The model is built here from seeded
arrays (no training run, whose float results may vary between machines), the state is made
through the API (interventions, settings, tags, events), and the clock is fixed.

To record the golden file again (only from a commit whose lists are known to be right):
    RECSYS_UPDATE_GOLDEN=1 pytest tests/serving/test_replay_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import ADMIN

GOLDEN = Path(__file__).parent / "golden" / "served_lists.json"
SCORE_TOLERANCE = 1e-4  # scores are compared within this; items, order, slots and reasons exactly
FACTORS = 16


@pytest.fixture(scope="module")
def golden_bundle(tmp_path_factory, synthetic_dir):
    """A model bundle from the synthetic dataset and seeded arrays: the same bytes on every run."""
    import torch

    from recsys.bundle import BundleParts, ModelBundle, write_bundle
    from recsys.evaluation import interaction_histories, positive_histories
    from recsys.ranking.features import FEATURE_NAMES, FeatureConfig, item_stats
    from recsys.ranking.model import MLPRanker
    from recsys.retrieval.index import build_index
    from recsys.schema import Dataset
    from training.pipeline import Catalog

    dataset = Dataset.load(synthetic_dir)
    user_ids, item_ids, history = positive_histories(dataset)
    seen = interaction_histories(dataset, user_ids, item_ids)
    catalog = Catalog.of(dataset)
    rng = np.random.default_rng(17)
    item_factors = (rng.normal(size=(len(item_ids), FACTORS)) * 0.3).astype(np.float32)
    user_factors = np.zeros((len(user_ids), FACTORS), dtype=np.float32)
    for user in range(len(user_ids)):
        items = history.of(user)
        if len(items):
            user_factors[user] = item_factors[items].mean(axis=0)
    stats = item_stats(item_factors, history.items, history.timestamps, catalog.codes, catalog.n_categories,
                       catalog.release_year, FeatureConfig())
    ranker = MLPRanker(FEATURE_NAMES, {"hidden": [16, 8]}, seed=0)
    with torch.no_grad():  # standardisation of the order of magnitude the features have
        ranker.network.scale.copy_(torch.linspace(0.5, 2.0, len(FEATURE_NAMES)))
    parts = BundleParts(
        items=dataset.items, users=dataset.users, user_ids=user_ids, history=history, seen=seen,
        item_factors=item_factors, user_factors=user_factors, stats=stats,
        index=build_index(item_factors, kind="flat"), ranker=ranker,
        manifest={"retrieval": {"kind": "als", "factors": FACTORS, "regularization": 0.05, "alpha": 2.0},
                  "feature_config": FeatureConfig().model_dump(mode="json"), "n_candidates": 200,
                  "dataset": {"name": "synthetic-golden", "fingerprint": "synthetic-golden"}},
    )
    directory = write_bundle(tmp_path_factory.mktemp("golden") / "bundle", parts)
    return ModelBundle.load(directory)


def fingerprint(bundle) -> str:
    """What the lists depend on in the model: if this changes, the golden file no longer applies."""
    digest = hashlib.sha256()
    for array in (bundle.item_factors, bundle.user_factors, bundle.history.items, bundle.seen.items,
                  bundle.stats.log_popularity, bundle.item_category, bundle.content_code, bundle.popularity):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update("|".join(map(str, bundle.item_ids)).encode())
    return digest.hexdigest()[:16]


def served(response) -> dict:
    """The parts of a response the replay compares (ids made per request, like request_id, left out)."""
    assert response.status_code == 200, response.text
    body = response.json()
    return {
        "mode": body["mode"], "mode_reason": body["mode_reason"], "minor_mode": body["minor_mode"],
        "policies": body["policies"], "violations": body["violations"],
        "items": [{"item_id": i["item_id"], "position": i["position"], "slot": i["slot"], "category": i["category"],
                   "labels": i["labels"], "reason": i["reason"], "score": i["score"]} for i in body["items"]],
    }


def replay(client, bundle, data) -> dict:
    """Make the state through the API, then serve the fixed requests; returns every list, by name."""
    services = client.app.state.services
    catalog = services.catalog
    item_id = lambda index: str(bundle.item_ids[int(index)])  # noqa: E731
    users = data.users.filter(pl.col("user_id").is_in(list(bundle.user_index)))
    lengths = {u: len(bundle.user_history(bundle.user_index[u])) for u in users["user_id"].to_list()}
    adults = sorted(u for u in users.filter(pl.col("age") >= 18)["user_id"].to_list() if lengths[u] >= 20)
    minors = sorted(users.filter(pl.col("age") < 18)["user_id"].to_list())
    a, b, c, d, e, f = adults[:6]

    popular = catalog.popular_order
    for body in (
        {"kind": "pin", "surface": "home", "item_id": item_id(popular[40]), "position": 3, "reason": "spring festival pick"},
        {"kind": "pin", "surface": "feed", "item_id": item_id(popular[75]), "position": 1, "reason": "editor's feature"},
        {"kind": "block", "item_id": item_id(popular[0]), "reason": "rights expired"},
        {"kind": "boost", "surface": "feed", "category": catalog.category_of(int(popular[7])), "factor": 3.0,
         "reason": "seasonal boost"},
    ):
        assert client.post("/v1/admin/interventions", json=body, headers=ADMIN).status_code == 201

    lists: dict[str, dict] = {}

    def ask(name: str, user: str, surface: str = "home", page: int = 0, k: int = 10, session: str | None = None) -> str:
        body = {"user_id": user, "surface": surface, "page": page, "k": k}
        if session is not None:
            body["session_id"] = session
        response = client.post("/v1/recommendations", json=body)
        lists[name] = served(response)
        return response.json()["session_id"]

    session = ask("adult_home_p0", a)
    ask("adult_home_p1", a, page=1, session=session)
    ask("adult_home_p2", a, page=2, session=session)
    ask("adult_feed_p0", a, surface="feed")
    ask("adult_related_k20", b, surface="related", k=20)
    ask("adult_home_new_session_recently_shown", a)

    tags = client.get(f"/v1/users/{c}/tags").json()["tags"]
    assert len(tags) >= 3, tags
    assert client.delete(f"/v1/users/{c}/tags/{tags[0]['name']}").status_code == 200
    assert client.post(f"/v1/users/{c}/tags", json={"tag": tags[1]["name"], "action": "not_interested"}).status_code == 200
    interests = [name for name in catalog.category_names if name and name not in {t["name"] for t in tags[:2]}]
    assert client.post(f"/v1/users/{c}/tags", json={"tag": interests[0], "action": "add"}).status_code == 200
    ask("adult_tags_changed_home_p0", c)
    ask("adult_tags_changed_feed_p0", c, surface="feed")

    now = services.clock()
    known = [item_id(i) for i in popular[2:30:3]]
    events = [{"event_id": f"golden-{n}", "user_id": d, "item_id": item, "type": ("click", "like", "impression")[n % 3],
               "ts": (now - timedelta(minutes=n + 1)).isoformat()} for n, item in enumerate(known)]
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    ask("adult_with_events_feed_p0", d, surface="feed")

    assert client.put(f"/v1/users/{e}/settings", json={"personalization": False}).status_code == 200
    session = ask("switched_off_home_p0", e)
    ask("switched_off_home_p1", e, page=1, session=session)
    ask("switched_off_feed_p0", e, surface="feed")

    session = ask("minor_home_p0", minors[0])
    ask("minor_home_p1", minors[0], page=1, session=session)
    ask("minor_feed_p0", minors[1], surface="feed")
    assert client.put(f"/v1/users/{f}/settings", json={"minor_mode": True}).status_code == 200
    ask("guardian_minor_mode_home_p0", f)

    ask("cold_user_home_p0", "golden-unknown-user")
    ask("cold_user_feed_p3", "golden-unknown-user", surface="feed", page=3)
    return lists


@pytest.fixture
def golden_client(golden_bundle, make_settings, clock):
    """The app around the golden model, fresh state, the fixed clock (outside the minors' curfew)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    app = create_app(make_settings(), clock=clock, bundle_loader=lambda uri: (golden_bundle, "golden"))
    with TestClient(app) as client:
        yield client


def test_served_lists_equal_the_recorded_golden_lists(golden_client, golden_bundle, data):
    lists = replay(golden_client, golden_bundle, data)
    recorded = {"model_fingerprint": fingerprint(golden_bundle), "lists": lists}
    if os.environ.get("RECSYS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert golden["model_fingerprint"] == recorded["model_fingerprint"], (
        "the test model is not the one the golden lists were recorded with (did the synthetic dataset change?); "
        "record them again from a commit whose lists are known to be right (see the module docstring)")
    assert sorted(lists) == sorted(golden["lists"])
    for name, expected in golden["lists"].items():
        actual = lists[name]
        scores = np.array([i.pop("score") for i in actual["items"]])
        expected_scores = np.array([i["score"] for i in expected["items"]])
        expected = {**expected, "items": [{k: v for k, v in i.items() if k != "score"} for i in expected["items"]]}
        assert actual == expected, name
        np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=SCORE_TOLERANCE, err_msg=name)


def test_the_golden_requests_cover_every_mode_and_reason():
    """The recorded lists exercise what the optimisation touches: both modes and every mode reason
    the requests make, sessions over several pages, pins, the editorial slots and each reason kind."""
    lists = json.loads(GOLDEN.read_text())["lists"]
    reasons = {(lst["mode_reason"]) for lst in lists.values()}
    assert {"personalized", "personalization_off", "minor_mode", "cold_user"} <= reasons
    slots = {i["slot"] for lst in lists.values() for i in lst["items"]}
    assert {"personalized", "mainstream", "pinned", "popular"} <= slots
    codes = {i["reason"]["code"] for lst in lists.values() for i in lst["items"]}
    assert {"similar_to_liked", "interest_tag", "editorial_front_screen", "pinned", "popular"} <= codes


def test_tags_counted_over_codes_are_derive_tags(golden_bundle):
    """The served path's tag derivation (numpy over category codes) gives `tags.derive_tags`'s
    tags, weights, details and order, for every user's history and for filtered histories."""
    from compliance import minors, tags
    from compliance.policy import PolicyConfig
    from served.catalog import Catalog
    from served.path import ServedPath

    catalog = Catalog.from_bundle(golden_bundle, "golden")
    rng = np.random.default_rng(3)
    for policy in (tags.TagPolicy(), tags.TagPolicy(min_weight=0.0, max_tags=3, banned=("drama", "crime"))):
        path = ServedPath(catalog, PolicyConfig(), minors.MinorsConfig(), policy, retrieval_candidates=50,
                          popular_candidates=50)
        assert path._tag_codes is not None  # the vectorised path is the one under test
        for user in range(len(golden_bundle.user_ids)):
            history = golden_bundle.user_history(user)
            for part in (history, history[rng.random(len(history)) < 0.3], history[:1]):
                expected = tags.derive_tags([catalog.item_categories[i] for i in part], policy)
                assert path._derive_tags(part) == expected
