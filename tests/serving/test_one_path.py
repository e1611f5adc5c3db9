"""One served path (issue 12): the Art. 8 review's offline lists are the server's lists for the
same requests and state, because both run `served.path.ServedPath`."""

from __future__ import annotations

import polars as pl

from recsys.schema import Dataset
from training.review import OfflineServing


def test_the_review_replays_exactly_what_the_server_serves(client, synthetic_dir, trained):
    bundle, _ = trained
    data = Dataset.load(synthetic_dir)
    adults = set(data.users.filter(pl.col("age") >= 18)["user_id"].to_list())
    users = [u for u in bundle.user_index if u in adults][:40]
    offline = OfflineServing(bundle)
    settings = client.app.state.services.settings
    assert (offline.n_candidates, offline.path.popular_candidates) == (settings.retrieval_candidates, settings.popular_candidates)
    compared = 0
    for user in users:
        served = client.post("/v1/recommendations", json={"user_id": user, "surface": "home", "k": 10}).json()
        assert served["mode"] == "personalized"
        index = bundle.user_index[user]
        replay = offline.served_list(bundle.user_history(index), 10, seen=bundle.user_seen(index), user_id=user)
        assert [str(bundle.item_ids[i]) for i in replay] == [i["item_id"] for i in served["items"]], user
        compared += 1
    assert compared == 40


def test_policies_off_is_a_configuration_of_the_same_path(client, synthetic_dir, trained):
    from functools import partial

    from serving.pipeline import RecommendationPipeline

    services = client.app.state.services
    settings = services.settings
    off = partial(RecommendationPipeline, policies=False)(
        services.catalog, services.store, settings.policy, settings.minors, settings.tags,
        retrieval_candidates=settings.retrieval_candidates, popular_candidates=settings.popular_candidates,
        recent_pages_excluded=settings.recent_pages_excluded, shared_state_loader=services.shared_state)
    bundle, _ = trained
    user = next(iter(bundle.user_index))
    from served.query import RecommendationRequest

    audience = services.gate.admit(user, services.clock(), route="test", request_id="test")
    rec = off.run(RecommendationRequest(user, "home", 0, 10), audience)
    assert rec.policies == ["item_dedup"] and rec.policy_hash == "policies-off"
    scores = [i.score for i in rec.items]
    assert scores == sorted(scores, reverse=True)  # the top k by score
