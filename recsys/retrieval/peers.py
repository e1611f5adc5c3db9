"""Published peers behind one interface, and their tuning on a validation split.

Every peer is a `HistoryRecommender`: `fit(train)` on the protocol's time-ordered positives
(`recsys.evaluation.Histories`), `scores(user_idx)` over the whole catalog, so the protocol's
`evaluate_scorer` ranks and scores them all the same way. Matrix models (`Recommender`) are wrapped
by `FromMatrix`, which fits them on `train.matrix()`.

| key | model | hyper-parameters |
| --- | --- | --- |
| popular | MostPopular (`baselines.py`) | - |
| recency | popularity of the last N days before the user's request (`recency.py`) | days, reference |
| itemknn | cosine item-item neighbourhood (`baselines.py`) | neighbours, shrinkage |
| rp3beta | RP3beta random walk (`graph.py`) | alpha, beta, neighbours |
| ease | EASE closed form (`baselines.py`) | regularization |
| als | implicit ALS (`als.py`) | factors, regularization, alpha (iterations) |
| sasrec | SASRec+ full-softmax sequence model (`sasrec.py`) | any `SASRecConfig` field; epochs by monitor |

`make_peer(key, params, seed)` builds one; `tune(key, grid, validation, seed)` fits every grid point
on `validation.train`, scores it on `validation.test` under both exclusion rules and picks the best
by the primary rule's NDCG@k (served reality, `unseen_ndcg_at_k`); test is never touched. For
SASRec the number of epochs is part of the search: each grid point trains with a monitor on the
same validation metric and keeps its best epoch, which the chosen setting then refits with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.evaluation import EXCLUDE_SEEN, K, RULE_PREFIX, RULES, Histories, Split, evaluate_scorer
from recsys.retrieval.base import HistoryRecommender, Recommender, RetrievalError

if TYPE_CHECKING:
    from recsys.retrieval.sasrec import SASRecPlus

SEEDED = frozenset({"als", "sasrec"})  # peers whose fit depends on the seed; the others are deterministic


class FromMatrix(HistoryRecommender):
    """A matrix `Recommender` as a `HistoryRecommender`: fits on the histories' binary matrix."""

    def __init__(self, model: Recommender):
        self.model = model
        self.name = model.name

    def fit(self, train: Histories) -> FromMatrix:
        self.model.fit(self._check_histories(train).matrix())
        return self

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        return self.model.scores(user_idx)


def make_peer(key: str, params: dict[str, Any] | None = None, seed: int = 0) -> HistoryRecommender:
    """An unfitted peer `key` with `params` (its config's fields) and `seed` where the model takes one."""
    params = dict(params or {})
    try:
        if key == "popular":
            from recsys.retrieval.baselines import MostPopular

            if params:
                raise RetrievalError(f"popular: takes no parameters, got {sorted(params)}")
            return FromMatrix(MostPopular())
        if key == "recency":
            from recsys.retrieval.recency import RecencyConfig, RecencyPopular

            return RecencyPopular(RecencyConfig(**params))
        if key == "itemknn":
            from recsys.retrieval.baselines import ItemKNN, ItemKNNConfig

            return FromMatrix(ItemKNN(ItemKNNConfig(**params)))
        if key == "rp3beta":
            from recsys.retrieval.graph import RP3beta, RP3betaConfig

            return FromMatrix(RP3beta(RP3betaConfig(**params)))
        if key == "ease":
            from recsys.retrieval.baselines import EASE, EASEConfig

            return FromMatrix(EASE(EASEConfig(**params)))
        if key == "als":
            from recsys.retrieval.als import ALS, ALSConfig

            return FromMatrix(ALS(ALSConfig(**{**params, "seed": seed})))
        if key == "sasrec":
            from recsys.retrieval.sasrec import SASRecConfig, SASRecPlus

            return SASRecPlus(SASRecConfig(**{**params, "seed": seed}))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        if isinstance(exc, RetrievalError):
            raise
        raise RetrievalError(f"{key}: bad parameters {params}: {' '.join(str(exc).split())}") from None
    raise RetrievalError(f"peer: unknown {key!r}; known: {', '.join(PEER_KEYS)}")


PEER_KEYS = ("popular", "recency", "itemknn", "rp3beta", "ease", "als", "sasrec")


@dataclass
class Tuning:
    """The outcome of a grid search on a validation split."""

    key: str
    chosen: dict[str, Any]  # the parameters to refit with (SASRec: with the best epoch count)
    validation: dict[str, float]  # the chosen point's validation metrics, both rules
    trace: list[dict[str, Any]] = field(default_factory=list)  # every point: params and NDCG@k per rule
    seconds: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "chosen": self.chosen, "validation": self.validation, "trace": self.trace,
                "seconds": round(self.seconds, 2), "seed": self.seed}


def tune(key: str, grid: list[dict[str, Any]] | tuple[dict[str, Any], ...], validation: Split, seed: int = 0,
         k: int = K, rule: str = EXCLUDE_SEEN, item_category: np.ndarray | None = None) -> Tuning:
    """Fit every point of `grid` on `validation.train`, score it on `validation.test` under both
    rules, and choose by `rule`'s NDCG@k (ties: the earlier grid point)."""
    if not grid:
        raise RetrievalError(f"{key}: empty grid")
    if rule not in RULES:
        raise RetrievalError(f"rule: expected one of {RULES}, got {rule!r}")
    target = f"{RULE_PREFIX[rule]}ndcg_at_{k}"
    started = time.perf_counter()
    best: tuple[float, dict[str, Any], dict[str, float]] | None = None
    trace: list[dict[str, Any]] = []
    for params in grid:
        point_started = time.perf_counter()
        model = make_peer(key, params, seed)
        chosen = dict(params)
        sasrec = _sasrec(model) if key == "sasrec" else None
        if sasrec is not None:
            def monitor(m: SASRecPlus, _split: Split = validation) -> float:
                return evaluate_scorer(m, _split, item_category, k, rules=(rule,))[target]

            sasrec.fit(validation.train, monitor=monitor)
            chosen["epochs"] = int(sasrec.epochs_run if sasrec.best_epoch is None else sasrec.best_epoch)
        else:
            model.fit(validation.train)
        metrics = evaluate_scorer(model, validation, item_category, k)
        entry = {"params": chosen,
                 **{f"{RULE_PREFIX[r]}ndcg_at_{k}": round(metrics[f"{RULE_PREFIX[r]}ndcg_at_{k}"], 5) for r in RULES},
                 "seconds": round(time.perf_counter() - point_started, 2)}
        if sasrec is not None:
            entry["monitor"] = [[epoch, round(value, 5)] for epoch, value in sasrec.monitor_trace]
        trace.append(entry)
        if best is None or metrics[target] > best[0]:
            best = (metrics[target], chosen, metrics)
    assert best is not None  # the grid is not empty
    return Tuning(key, best[1], {name: float(v) for name, v in best[2].items()}, trace,
                  time.perf_counter() - started, seed)


def _sasrec(model: HistoryRecommender) -> SASRecPlus:
    """The SASRec+ model `make_peer` built for the key "sasrec" (imported here: it loads torch)."""
    from recsys.retrieval.sasrec import SASRecPlus

    if not isinstance(model, SASRecPlus):
        raise RetrievalError(f"sasrec: expected a SASRecPlus, got {type(model).__name__}")
    return model
