"""The README's fork guide, done: each "add a ..." path of the guide, exactly as a forker would do it.

- A ranker: one `Ranker` subclass and one `RANKERS` entry, named in the training config. Here a
  linear listwise ranker (defined in this module, the way a fork's own module would be), trained by
  the real pipeline into a throwaway MLflow store, registered, loaded back through the registry and
  served over the app.
- A dataset: a folder holding the schema's three Parquet files, written with plain polars (string
  ids, an extra item column) — no code in `recsys/datasets/`.
- A policy over an item attribute: `tests/serving/test_open_attributes.py` (one config entry).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from recsys.config import core_settings
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.ranking.model import RANKERS, Ranker, RankingLists, load_ranker
from recsys.schema import FRAME_FILES, Dataset, SchemaError

pytestmark = pytest.mark.e2e


# -- a fork's ranker: what would live in recsys/ranking/linear.py ---------------------------------


class LinearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=30, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)


class LinearRanker(Ranker):
    """A linear scorer over standardised features, trained with the listwise softmax loss."""

    kind: ClassVar[str] = "linear"
    config_type: ClassVar[type[BaseModel]] = LinearConfig

    def __init__(self, feature_names: list[str], config: dict[str, Any] | None = None, seed: int = 0):
        super().__init__(feature_names)
        self.config = LinearConfig(**(config or {}))
        self.seed = seed
        n = len(self.feature_names)
        self.weights, self.mean, self.scale = torch.zeros(n), torch.zeros(n), torch.ones(n)

    def fit(self, train: RankingLists, valid: RankingLists | None = None) -> dict[str, float]:
        rows = train.features[train.mask]
        self.mean, self.scale = torch.from_numpy(rows.mean(axis=0)), torch.from_numpy(np.maximum(rows.std(axis=0), 1e-6))
        weights = torch.zeros(len(self.feature_names), requires_grad=True)
        optimiser = torch.optim.Adam([weights], lr=self.config.learning_rate)
        features, labels, mask = (torch.from_numpy(a) for a in (train.features, train.labels, train.mask))
        loss = torch.tensor(0.0)
        for _ in range(self.config.epochs):
            scores = (((features - self.mean) / self.scale) @ weights).masked_fill(~mask, -1e9)
            loss = (-(labels * torch.log_softmax(scores, -1)).sum(-1) / labels.sum(-1).clamp_min(1)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        self.weights = weights.detach()
        return {"train_loss": float(loss.detach()), "epochs": float(self.config.epochs)}

    def score(self, features: np.ndarray) -> np.ndarray:
        features = self._check(features)
        return (((torch.from_numpy(features) - self.mean) / self.scale) @ self.weights).numpy()

    def state(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(mode="json"), "seed": self.seed,
                "weights": self.weights, "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, Any], feature_names: list[str]) -> LinearRanker:
        ranker = cls(feature_names, config=state["config"], seed=int(state["seed"]))
        ranker.weights, ranker.mean, ranker.scale = state["weights"], state["mean"], state["scale"]
        return ranker


# -- a fork's dataset: three Parquet files in a folder ---------------------------------------------


@pytest.fixture(scope="module")
def podcast_dir(tmp_path_factory):
    """A forker's own data, written with plain polars: string ids of their own, an extra `show` column."""
    source = generate(SyntheticConfig(n_users=250, n_items=600, interactions_per_user=30, seed=21))
    out = tmp_path_factory.mktemp("podcasts")
    rename = {old: f"episode-{i:04d}" for i, old in enumerate(source.items["item_id"].to_list())}
    people = {old: f"listener-{i:04d}" for i, old in enumerate(source.users["user_id"].to_list())}
    items = source.items.to_dicts()
    for i, row in enumerate(items):
        row["item_id"] = rename[row["item_id"]]
        row["show"] = f"show-{i * 7 % 50}"
    pl.DataFrame(items).write_parquet(out / FRAME_FILES["items"])
    pl.DataFrame({"user_id": [people[u] for u in source.interactions["user_id"].to_list()],
                  "item_id": [rename[i] for i in source.interactions["item_id"].to_list()],
                  "timestamp": source.interactions["timestamp"].to_list(),
                  "rating": source.interactions["rating"].to_list()}).write_parquet(out / FRAME_FILES["interactions"])
    pl.DataFrame({"user_id": [people[u] for u in source.users["user_id"].to_list()],
                  "age": source.users["age"].to_list()}).write_parquet(out / FRAME_FILES["users"])
    return out


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fork-mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("RECSYS_MLFLOW_ARTIFACTS_DIR", str(root / "artifacts"))
        patch.setenv("RECSYS_VAR_DIR", str(root / "var"))
        # The one registry entry a fork adds ("name" -> "module:Class").
        patch.setitem(RANKERS, "linear", f"{__name__}:LinearRanker")
        core_settings.cache_clear()
        yield root
    core_settings.cache_clear()


@pytest.fixture(scope="module")
def fork_model(mlflow_store, podcast_dir):
    from recsys.registry import load_bundle
    from training.config import TrainingConfig
    from training.pipeline import train

    config = TrainingConfig.model_validate({
        "als": {"factors": 16, "regularization": 1.0, "iterations": 8},
        "n_candidates": 60,
        "ranker": {"kind": "linear", "params": {"epochs": 40}},  # the training config names the new ranker
        # A small SASRec and a short Art. 8 review simulation: the guide's point is the new ranker, not quality.
        "sequential": {"n_candidates": 30, "sasrec": {"max_len": 20, "hidden": 16, "blocks": 1, "epochs": 3}},
        "review": {"simulation_users": 20, "simulation_sessions": 5, "list_users": 100},
    })
    result = train(str(podcast_dir), config, progress=False)
    assert result.alias_set, result.review
    return load_bundle()


def test_a_new_ranker_is_one_class_and_one_registry_entry(fork_model, mlflow_store, make_settings, clock):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    bundle, _ = fork_model
    assert isinstance(bundle.ranker, LinearRanker) and float(bundle.ranker.weights.abs().sum()) > 0
    # The registered file round-trips through the registry's loader (weights_only=True).
    saved = next(mlflow_store.rglob("ranker.pt"))
    assert isinstance(load_ranker(saved), LinearRanker)
    app = create_app(make_settings(), clock=clock, bundle_loader=lambda uri: fork_model)
    with TestClient(app) as client:
        user = next(iter(bundle.user_index))
        body = client.post("/v1/recommendations", json={"user_id": user, "surface": "feed", "k": 10}).json()
        assert body["mode"] == "personalized", body
        assert len(body["items"]) == 10 and all(i["item_id"].startswith("episode-") for i in body["items"])


def test_a_new_dataset_is_a_folder_of_three_parquet_files(fork_model, podcast_dir, tmp_path):
    bundle, _ = fork_model
    # The extra column travels into the model bundle, where a policy rule can name it.
    assert "show" in bundle.items.columns
    assert set(bundle.user_index) <= set(Dataset.load(podcast_dir).users["user_id"].to_list())
    # A folder missing a file names the file.
    broken = tmp_path / "broken"
    broken.mkdir()
    pl.read_parquet(podcast_dir / FRAME_FILES["items"]).write_parquet(broken / FRAME_FILES["items"])
    with pytest.raises(SchemaError, match="interactions.parquet: missing file"):
        Dataset.load(broken)


# -- a fork's candidate source: one method of ServedPath ---------------------------------------------


def test_a_new_candidate_source_is_one_method_and_every_caller_runs_it(trained):
    """A "new releases" source added to `ServedPath.candidate_sources` (here in a subclass, as a
    fork would edit the method): the Art. 8 review's replay runs it, the ranker scores its items,
    and the safety filters apply to them like to any source's (a flagged new release never shows)."""
    from recsys.pipeline.candidates import Source
    from served.path import ServedPath
    from training.review import POPULAR_CANDIDATES, OfflineServing

    bundle, _ = trained
    years = bundle.items["release_year"].fill_null(0).to_numpy()
    newest = np.argsort(-years, kind="stable")[:40].astype(np.int64)
    flagged_new = newest[bundle.flagged[newest]]
    if not len(flagged_new):  # make sure the source offers something the safety filter must stop
        newest = np.concatenate([newest, np.flatnonzero(bundle.flagged)[:3]])
    traces = []

    class WithNewReleases(ServedPath):
        def candidate_sources(self, query, shared, trace):
            items, scores, sources = super().candidate_sources(query, shared, trace)
            fresh = newest[~np.isin(newest, items)]
            trace.candidates["new_releases"] = int(len(fresh))
            traces.append((trace, fresh))
            top = np.full(len(fresh), float(scores.max()) if len(scores) else 1.0, dtype=np.float32)
            return (np.concatenate([items, fresh]), np.concatenate([scores, top]),
                    np.concatenate([sources, np.full(len(fresh), int(Source.TRENDING), dtype=np.int8)]))

    review = OfflineServing(bundle, surface="feed")
    review.path = WithNewReleases(review.path.catalog, review.policy, review.minors, review.path.tag_policy,
                                  retrieval_candidates=review.n_candidates, popular_candidates=POPULAR_CANDIDATES)
    users = list(bundle.user_index.values())[:30]
    served = [review.served_list(bundle.user_history(u), 10) for u in users]
    assert len(traces) == len(served)
    for (trace, fresh), row in zip(traces, served):
        assert trace.candidates["new_releases"] == len(fresh) > 0
        offered_flagged = int(bundle.flagged[fresh].sum())
        assert trace.dropped["filters"].get("blocked", 0) >= offered_flagged > 0  # the filter stopped them
        assert not bundle.flagged[row].any() and len(set(row.tolist())) == len(row) == 10
