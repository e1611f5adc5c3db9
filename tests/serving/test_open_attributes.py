"""Open attributes (issue 12): "at most 1 item from the same creator in any 10 positions" is a data
column plus one config entry — no code. The test does exactly that: it adds a `creator` column to
the dataset's items, trains through the real CLI, and serves with one entry in the policy config."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import polars as pl
import pytest

from recsys.schema import Dataset
from tests.conftest import RECSYS

pytestmark = pytest.mark.e2e

# The rule is checked, not the model's quality: a small SASRec and a short review simulation (the defaults
# train the 64-dim, 2-block, 20-epoch SASRec twice, most of this module's time). Same CLI, same stages.
QUICK_TRAINING = {"sequential": {"n_candidates": 30, "sasrec": {"max_len": 20, "hidden": 16, "blocks": 1, "epochs": 3}},
                  "review": {"simulation_users": 20, "simulation_sessions": 5, "list_users": 100}}
CREATOR_RULE = {"type": "dispersal", "attribute": "creator", "window": 10, "max_per_window": 1,
                "name": "creator_dispersal", "title": "One item per creator"}


@pytest.fixture(scope="module")
def creator_model(synthetic_dir, model_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("creators")
    data = Dataset.load(synthetic_dir)
    rng = np.random.default_rng(3)
    creators = [f"studio-{c}" for c in rng.integers(0, 40, len(data.items))]  # ~75 items per creator
    Dataset(data.name, data.interactions, data.items.with_columns(creator=pl.Series(creators)), data.users).save(root / "data")
    env = {**model_env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "RECSYS_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "RECSYS_MLFLOW_ARTIFACTS_DIR": str(root / "mlartifacts"), "RECSYS_VAR_DIR": str(root / "var")}
    config = root / "quick.json"
    config.write_text(json.dumps(QUICK_TRAINING))
    result = subprocess.run([RECSYS, "train", "--dataset", str(root / "data"), "--seed", "0", "--config", str(config)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    from recsys.config import core_settings, environment
    from recsys.registry import load_bundle

    with environment({k: v for k, v in env.items() if k.startswith(("MLFLOW_", "RECSYS_"))}):
        settings = core_settings()
        return load_bundle(f"models:/{settings.model_name}@{settings.model_alias}")


def test_a_creator_rule_is_one_config_entry(creator_model, make_settings, clock):
    from fastapi.testclient import TestClient

    from compliance.policy import PolicyConfig
    from serving.app import create_app

    bundle, _ = creator_model
    creator = dict(zip(bundle.items["item_id"].to_list(), bundle.items["creator"].to_list()))
    policy = PolicyConfig.model_validate({"rules": [CREATOR_RULE]})
    app = create_app(make_settings(policy=policy), clock=clock, bundle_loader=lambda uri: creator_model)
    with TestClient(app) as client:
        assert "One item per creator" in client.get("/transparency").text
        unconstrained_repeats = 0
        for user in list(bundle.user_index)[:25]:
            sequence, session = [], None
            for page in range(3):
                body = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "page": page,
                                                                 "k": 10, "session_id": session}).json()
                session = body["session_id"]
                assert "creator_dispersal" in body["policies"]
                reported = {v["position"] for v in body["violations"] if v["rule"] == "creator_dispersal"}
                for item in body["items"]:
                    window = sequence[-9:]
                    if creator[item["item_id"]] in window:
                        assert item["position"] in reported, (user, page, item)
                    sequence.append(creator[item["item_id"]])
            plain = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
            unconstrained_repeats += len(plain["items"]) - len({creator[i["item_id"]] for i in plain["items"]})
        assert unconstrained_repeats == 0  # the rule holds on every list (and nothing is reported)


def test_a_rule_naming_a_column_the_items_lack_stops_the_start(trained, make_settings, clock):
    from compliance.policy import PolicyConfig
    from serving.services import build_services

    policy = PolicyConfig.model_validate({"rules": [{**CREATOR_RULE, "attribute": "studio"}]})
    services = build_services(make_settings(policy=policy), clock=clock, bundle_loader=lambda uri: trained)
    assert services.pipeline is None and "no such column" in services.model_error
    services.logstore.close()
