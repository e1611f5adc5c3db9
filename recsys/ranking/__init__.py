"""Ranking: features (features.py), rankers and their registry (model.py), training lists (train.py).

The ranker reorders the retrieval stage's candidates using behavioural features only; adding a
ranker is one module with a `Ranker` subclass plus an entry in `model.RANKERS`.
"""
