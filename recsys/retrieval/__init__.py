"""Retrieval: the model interface (base.py), one module per algorithm, and the Faiss index (index.py).

`MODELS` names every retrieval model; adding one is a module with a `Recommender` subclass plus an
entry here. Classes are imported on first use, so importing this package does not load implicit.

The quality benchmark's published peers (MostPopular, recency popularity, ItemKNN, RP3beta, EASE,
ALS, SASRec+) share one interface, `HistoryRecommender` (fit on the protocol's time-ordered
histories, score users over the catalog), built and tuned on a validation split by `peers.py`;
`graph.py` (RP3beta), `recency.py` and `sasrec.py` hold the models `baselines.py` and `als.py` lack.
"""

from __future__ import annotations

import importlib

from recsys.retrieval.base import FactorModel, HistoryRecommender, Recommender, RetrievalError

MODELS: dict[str, str] = {
    "popular": "recsys.retrieval.baselines:MostPopular",
    "itemknn": "recsys.retrieval.baselines:ItemKNN",
    "ease": "recsys.retrieval.baselines:EASE",
    "als": "recsys.retrieval.als:ALS",
}


def model_class(kind: str) -> type[Recommender]:
    """The retrieval model class registered under `kind`."""
    if kind not in MODELS:
        raise RetrievalError(f"retrieval model: unknown {kind!r}; known: {', '.join(sorted(MODELS))}")
    module, name = MODELS[kind].split(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise RetrievalError(f"retrieval model {kind!r}: {MODELS[kind]} is not a Recommender subclass")
    return cls


__all__ = ["MODELS", "FactorModel", "HistoryRecommender", "Recommender", "RetrievalError", "model_class"]
