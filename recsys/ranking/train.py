"""Training data for the ranker: retrieval candidates of a validation split, labelled and featurised.

The ranker learns on what it will see in serving: for each user, the retrieval stage's top-N
candidates with every item the user is known to have rated (any rating, `Split.seen`) excluded,
as serving excludes them, labelled with the held-out positives of a validation split carved from
train exactly like test, with features built by the serving code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from recsys.evaluation import Histories, Split, candidate_recall, ranking_metrics
from recsys.ranking.features import FEATURE_NAMES, FeatureConfig, ItemStats, build_features
from recsys.pipeline.candidates import Source, merge_sources
from recsys.ranking.model import Ranker, RankingLists
from recsys.retrieval.sequential import SequentialSource

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""(queries (b, d) float32, k) -> (scores, item indices), best first; -1 pads (e.g. ItemIndex.search)."""


@dataclass(frozen=True)
class Candidates:
    """Top-N retrieval candidates per user (history and excluded items removed); -1 pads, scores -inf there.

    With a sequential source (`with_sequential`) each row is ALS's top-N then the sequence model's
    top-M items ALS did not find; `scores` is the ALS score of every candidate, `sequential` the
    sequence model's logit and `from_sequential` whether that source retrieved it."""

    users: np.ndarray
    items: np.ndarray  # int64 (users, n)
    scores: np.ndarray  # float32 (users, n)
    sequential: np.ndarray | None = None  # float32 (users, n): the sequence model's logits
    from_sequential: np.ndarray | None = None  # bool (users, n)


def retrieve(search: Search, user_vectors: np.ndarray, histories: Histories, users: np.ndarray, n: int,
             batch_size: int = 2048, exclude: Histories | None = None) -> Candidates:
    """The top-n items of each user by `search`, items of the user's history removed, and those of
    the user's row of `exclude` too (e.g. every interaction at any rating: `Split.seen`, the
    bundle's seen items), so the n candidates are all items the user has not seen."""
    users = np.asarray(users, dtype=np.int64)
    lengths = histories.lengths[users] if len(users) else np.zeros(0, dtype=np.int64)
    if exclude is not None and len(users):  # distinct items removed per user: the search depth needed
        lengths = (histories.matrix()[users] + exclude.matrix()[users]).getnnz(axis=1)
    k = int(min(histories.n_items, n + (lengths.max() if len(lengths) else 0)))
    items = np.full((len(users), n), -1, dtype=np.int64)
    scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        found_scores, found = search(np.ascontiguousarray(user_vectors[batch], dtype=np.float32), k)
        for row, user in enumerate(batch):
            removed = histories.of(user) if exclude is None else np.concatenate([histories.of(user), exclude.of(user)])
            keep = (found[row] >= 0) & ~np.isin(found[row], removed)
            chosen = found[row][keep][:n]
            items[start + row, : len(chosen)] = chosen
            scores[start + row, : len(chosen)] = found_scores[row][keep][:n]
    return Candidates(users, items, scores)


def with_sequential(als: Candidates, item_factors: np.ndarray, user_vectors: np.ndarray, source: SequentialSource | None,
                    histories: Histories, exclude: Histories | None = None,
                    extra: Sequence[np.ndarray] = ()) -> Candidates:
    """`als`'s candidates merged with the sequential source's top `source.n_candidates` for the same
    users (the same items excluded), then with the `extra` item lists (the served path's
    non-personalized sources: the most popular items, the editorial pool; the same for every user,
    the user's history and `exclude` items removed), through the served path's merge
    (`merge_sources`: ALS first). Every candidate gets ALS's score from `user_vectors`/`item_factors`
    and, with a `source`, the sequence model's, each user's `histories` row encoded as the server
    encodes it (without a source the sequential columns stay None)."""
    users = als.users
    found = None
    queries = item_vectors = None
    if source is not None:
        queries = np.zeros((histories.n_users, source.model.config.hidden), dtype=np.float32)
        if len(users):
            queries[users] = source.queries([histories.of(int(u)) for u in users])
        found = retrieve(source.search, queries, histories, users, source.n_candidates, exclude=exclude)
        item_vectors = source.item_vectors()
    extra = [np.asarray(part, dtype=np.int64) for part in extra]
    width = als.items.shape[1] + (0 if source is None else source.n_candidates) + sum(len(part) for part in extra)
    items = np.full((len(users), width), -1, dtype=np.int64)
    scores = np.full((len(users), width), -np.inf, dtype=np.float32)
    sequential = np.full((len(users), width), -np.inf, dtype=np.float32)
    from_sequential = np.zeros((len(users), width), dtype=bool)
    for row, user in enumerate(users):
        parts = [als.items[row][als.items[row] >= 0]]
        origins = [Source.RANKED]
        if found is not None:
            parts.append(found.items[row][found.items[row] >= 0])
            origins.append(Source.SEQUENTIAL)
        if extra:
            removed = histories.of(int(user)) if exclude is None else np.concatenate([histories.of(int(user)),
                                                                                       exclude.of(int(user))])
            for part in extra:
                parts.append(part[~np.isin(part, removed)])
                origins.append(Source.POPULAR)
        merged, _, _ = merge_sources(parts, [np.zeros(len(p), dtype=np.float32) for p in parts],
                                     [np.full(len(p), int(o), dtype=np.int8) for p, o in zip(parts, origins)])
        n = len(merged)
        items[row, :n] = merged
        scores[row, :n] = item_factors[merged] @ user_vectors[user]
        if queries is not None and item_vectors is not None:
            sequential[row, :n] = item_vectors[merged] @ queries[user]
            from_sequential[row, :n] = np.isin(merged, parts[1])
    if extra:  # the shared lists overlap the personal ones: keep only the columns some user fills
        used = int((items >= 0).sum(axis=1).max()) if len(users) else 0
        items, scores, sequential, from_sequential = (a[:, :used] for a in (items, scores, sequential, from_sequential))
    if source is None:
        return Candidates(users, items, scores)
    return Candidates(users, items, scores, sequential, from_sequential)


def featurise(stats: ItemStats, user_vectors: np.ndarray, histories: Histories, candidates: Candidates,
              config: FeatureConfig, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(features (users, n, f), mask (users, n)) through the same `build_features` serving calls."""
    n_users, n = candidates.items.shape
    features = np.zeros((n_users, n, len(FEATURE_NAMES)), dtype=np.float32)
    mask = candidates.items >= 0
    rows = tqdm(range(n_users), desc="features", disable=not progress, leave=False)
    # One list's products are tiny: a BLAS thread pool only adds wake-ups (8x slower measured on two
    # busy cores), as serving found; one thread, like a request.
    with threadpool_limits(limits=1, user_api="blas"):
        for row in rows:
            user = candidates.users[row]
            real = mask[row]
            sequential = None if candidates.sequential is None else candidates.sequential[row, real]
            origin = None if candidates.from_sequential is None else candidates.from_sequential[row, real]
            features[row, real] = build_features(
                stats, user_vectors[user], histories.of(user), candidates.items[row, real], candidates.scores[row, real],
                config, sequential, origin,
            )
    return features, mask


def label(candidates: Candidates, held_out: Histories) -> np.ndarray:
    """1.0 where a candidate is one of the user's held-out positives."""
    labels = np.zeros(candidates.items.shape, dtype=np.float32)
    for row, user in enumerate(candidates.users):
        labels[row] = np.isin(candidates.items[row], held_out.of(user)) & (candidates.items[row] >= 0)
    return labels


def ranking_lists(stats: ItemStats, user_vectors: np.ndarray, split: Split, search: Search, n_candidates: int,
                  config: FeatureConfig, progress: bool = False, item_factors: np.ndarray | None = None,
                  sequential: SequentialSource | None = None, extra: Sequence[np.ndarray] = (),
                  pool: np.ndarray | None = None) -> tuple[RankingLists, Candidates]:
    """Lists for every user with both a history and a held-out positive in `split`; the candidates
    exclude every item the user rated before the held-out part (`split.seen`), as serving does.
    With a `sequential` source (and the ALS `item_factors`) its candidates join ALS's; the `extra`
    item lists (the served path's non-personalized sources) join them too, so the ranker learns on
    the candidates serving gives it. Each candidate's groups (`list_groups`: its primary category,
    and membership of the editorial `pool` when given) go with the lists for the group loss."""
    users = np.flatnonzero((split.train.lengths > 0) & (split.test.lengths > 0))
    candidates = retrieve(search, user_vectors, split.train, users, n_candidates, exclude=split.seen)
    if sequential is not None or extra:
        if item_factors is None:
            raise ValueError("ranking_lists: merged sources need the ALS item_factors to score their candidates")
        candidates = with_sequential(candidates, item_factors, user_vectors, sequential, split.train, split.seen,
                                     extra)
    features, mask = featurise(stats, user_vectors, split.train, candidates, config, progress)
    groups = list_groups(candidates.items, stats.category_codes[:, 0], pool)
    return RankingLists(features, label(candidates, split.test), mask, groups), candidates


def list_groups(items: np.ndarray, primary: np.ndarray, pool: np.ndarray | None = None) -> np.ndarray:
    """int32 (users, n, g): per candidate its code in each grouping the policy selects within, -1
    for none (and on padded rows): column 0 the primary category (the session cap and dispersal
    keep a few per category), column 1, with a `pool` mask, 0 for an editorial pool item (the
    front screen takes the pool's best)."""
    real = items >= 0
    safe = np.where(real, items, 0)
    columns = [np.where(real, primary[safe], -1)]
    if pool is not None:
        columns.append(np.where(real & pool[safe], 0, -1))
    return np.stack(columns, axis=-1).astype(np.int32)


def list_top_k(scores: np.ndarray, candidates: Candidates, k: int) -> np.ndarray:
    """Top-k candidate items per user by `scores` (users, n), ties by retrieval order."""
    scores = np.where(candidates.items >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(candidates.items, order, axis=1)
    return np.where(np.take_along_axis(scores, order, axis=1) == -np.inf, -1, top)


def list_metrics(ranker: Ranker, lists: RankingLists, candidates: Candidates, held_out: Histories, k: int = 10) -> dict[str, float]:
    """NDCG/Recall@k of the ranker and of retrieval order on the same lists, plus candidate recall."""
    n_users, n, f = lists.features.shape
    ranked = ranker.score(lists.features.reshape(-1, f)).reshape(n_users, n)
    out = {}
    for name, scores in (("ranker", ranked), ("retrieval", candidates.scores)):
        recall, ndcg = ranking_metrics(list_top_k(scores, candidates, k), candidates.users, held_out, k)
        out[f"{name}_ndcg_at_{k}"] = float(np.nanmean(ndcg))
        out[f"{name}_recall_at_{k}"] = float(np.nanmean(recall))
    out[f"candidate_recall_at_{n}"] = candidate_recall(candidates.items, candidates.users, held_out)
    return out


def split_lists(lists: RankingLists, share: float, seed: int) -> tuple[RankingLists, RankingLists]:
    """(train, early-stopping) lists: lists with a positive, a `share` of them held out at random."""
    useful = np.flatnonzero(lists.labels.sum(axis=1) > 0)
    rng = np.random.default_rng(seed)
    rng.shuffle(useful)
    held = max(1, int(round(share * len(useful)))) if len(useful) > 1 else 0
    return lists.subset(np.sort(useful[held:])), lists.subset(np.sort(useful[:held]))
