"""The bundle carries every interaction of the training window (any rating): round trip,
`user_seen`, format-1 bundles, and two-stage candidates that never hold a seen item."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from recsys.bundle import FORMAT_VERSION, SEEN_FILES, BundleError, ModelBundle
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.evaluation import MIN_RATING, validation_split
from recsys.ranking.train import ranking_lists, retrieve
from recsys.retrieval.index import build_index
from training.config import TrainingConfig
from training.pipeline import Catalog, fit_retrieval, run_offline, stats_for

SMALL = {
    "als": {"factors": 16, "regularization": 1.0, "iterations": 6},
    "n_candidates": 40,
    "ranker": {"params": {"hidden": [8], "epochs": 3}},
}


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    data = generate(SyntheticConfig(n_users=150, n_items=400, interactions_per_user=30, seed=5))
    return run_offline(data, TrainingConfig.model_validate(SMALL), tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def bundle(offline):
    return ModelBundle.load(offline.bundle_dir, serving=False)


def test_seen_arrays_round_trip(offline, bundle):
    known = offline.split.known()
    assert bundle.manifest["format_version"] == FORMAT_VERSION == 3 and not bundle.seen_fallback
    for name in ("indptr", "items", "timestamps", "ratings"):
        assert np.array_equal(getattr(bundle.seen, name), getattr(known, name)), name
    assert bundle.seen.items.dtype == np.int64 and bundle.seen.ratings.dtype == np.float32
    for user in range(bundle.seen.n_users):  # each user's interactions in time order
        times = bundle.seen.timestamps[bundle.seen.indptr[user]:bundle.seen.indptr[user + 1]]
        assert np.all(np.diff(times) >= 0)


def test_user_seen_holds_low_rated_items(bundle):
    low_users = 0
    for user in range(len(bundle.user_ids)):
        seen = bundle.user_seen(user)
        assert seen.dtype == np.int64 and np.all(np.diff(seen) > 0)  # sorted, distinct
        assert set(bundle.user_history(user)) <= set(seen)
        low = bundle.seen.of(user)[bundle.seen.ratings_of(user) < MIN_RATING]
        assert set(low) <= set(seen)
        if len(set(low) - set(bundle.user_history(user))):
            low_users += 1
    assert low_users > len(bundle.user_ids) // 2  # the synthetic data rates plenty below 4


def test_a_format_1_bundle_without_seen_files_loads(offline, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(offline.bundle_dir, old)
    for name in SEEN_FILES:
        (old / name).unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    bundle = ModelBundle.load(old, serving=False)
    assert bundle.seen_fallback
    user = next(iter(bundle.user_index.values()))
    assert bundle.user_seen(user).tolist() == sorted(set(bundle.user_history(user).tolist()))
    assert bundle.recommend(np.array([user]), k=5).shape == (1, 5)

    manifest["format_version"] = 2  # a format-2 bundle must hold them
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="seen_indptr.npy"):
        ModelBundle.load(old, serving=False)


def test_two_stage_candidates_never_hold_a_seen_item(offline, bundle):
    split = offline.split
    users = split.test_users()
    top = bundle.recommend(users, k=10)
    for row, user in zip(top, users):
        assert not np.isin(row, bundle.user_seen(user)).any()
    # The evaluation's candidates (seen rule) and the ranker's training candidates on a validation split.
    candidates = retrieve(bundle.index.search, bundle.user_factors, split.train, users, 40, exclude=split.seen)
    for row, user in zip(candidates.items, users):
        assert not np.isin(row[row >= 0], split.seen.of(user)).any() and (row >= 0).sum() == 40
    config = TrainingConfig.model_validate(SMALL).effective()
    validation = validation_split(split)
    retrieval = fit_retrieval(validation.train, config)
    stats = stats_for(retrieval, validation.train, Catalog.of(offline.dataset), config)
    index = build_index(retrieval.item_factors, config=config.index)
    lists, found = ranking_lists(stats, retrieval.user_factors, validation, index.search, 40, config.features)
    low_before = 0
    for row, user in zip(found.items, found.users):
        assert not np.isin(row[row >= 0], validation.seen.of(user)).any()
        low_before += int((validation.seen.ratings_of(user) < MIN_RATING).any())
    assert low_before > 0  # the property is not vacuous
    # Without the seen rule, low-rated items do come back among the candidates.
    loose = retrieve(bundle.index.search, bundle.user_factors, split.train, users, 40)
    assert any(np.isin(row, split.seen.of(user)).any() for row, user in zip(loose.items, users))


def test_training_lists_with_the_served_sources_hold_no_seen_item_and_carry_groups(offline):
    """`ranker.popular_candidates`: the popular and editorial sources join each training list as
    they join a request's candidates, every seen item still excluded; each candidate carries its
    primary category and editorial-pool membership for the group loss."""
    split = offline.split
    config = TrainingConfig.model_validate(SMALL).effective()
    validation = validation_split(split)
    retrieval = fit_retrieval(validation.train, config)
    catalog = Catalog.of(offline.dataset)
    assert catalog.mainstream is not None  # the dataset's column (this small one has no pool item: give it one)
    catalog = dataclasses.replace(catalog, mainstream=np.arange(len(catalog.mainstream)) % 7 == 0)
    stats = stats_for(retrieval, validation.train, catalog, config)
    index = build_index(retrieval.item_factors, config=config.index)
    sources = catalog.served_sources(validation.train, 30)
    assert catalog.mainstream[sources[1]].all() and len(sources[0]) == 30
    lists, found = ranking_lists(stats, retrieval.user_factors, validation, index.search, 40, config.features,
                                 item_factors=retrieval.item_factors, extra=sources, pool=catalog.mainstream)
    assert lists.groups is not None and lists.groups.shape == found.items.shape + (2,)
    for row, user in enumerate(found.users):
        items = found.items[row][found.items[row] >= 0]
        assert len(items) == len(np.unique(items)) >= 40
        assert not np.isin(items, validation.seen.of(user)).any() and not np.isin(items, validation.train.of(user)).any()
        unseen_pool = np.setdiff1d(sources[1], np.union1d(validation.seen.of(user), validation.train.of(user)))
        assert np.isin(unseen_pool, items).all()
        real = found.items[row] >= 0
        assert (lists.groups[row, real, 1] == 0).tolist() == catalog.mainstream[items].tolist()
        assert (lists.groups[row, ~real] == -1).all()
