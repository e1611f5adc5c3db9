"""The sequential candidate source: a SASRec+ model and a Faiss index over its item embeddings.

The second retrieval source next to ALS (issue 16 item 3). ALS places a user by everything they
liked at once; the sequence model reads the user's items in time order and asks what comes next,
so it answers the user's latest interests. At request time the user's sequence (their stored
positives, then the items of their engagement events, oldest first) is encoded once by the
network (`query`), and the index returns the items with the largest logits. Training fits it on
the same time-ordered positives as ALS; the ranker learns from both sources' scores.

On disk (a bundle's `sequential/` directory): `model.pt` (the SASRec+ configuration and tensors,
`SASRecPlus.save`), `index/` (Faiss, `ItemIndex.save`), `source.json` (the candidate depth) and
`user_queries.npy` (each bundle user's query for their stored history, computed once at training as
ALS's user vectors are: a request encodes a sequence only when the user has engaged since).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys.evaluation import Histories
from recsys.retrieval.base import RetrievalError
from recsys.retrieval.index import IndexConfig, ItemIndex, build_index
from recsys.retrieval.sasrec import SASRecConfig, SASRecPlus

MODEL_FILE = "model.pt"
INDEX_DIR = "index"
SOURCE_FILE = "source.json"
USER_QUERIES_FILE = "user_queries.npy"


@dataclass
class SequentialSource:
    """A fitted sequence model, the index over its item embeddings, and how many candidates it gives."""

    model: SASRecPlus
    index: ItemIndex
    n_candidates: int
    user_queries: np.ndarray | None = None  # (n_users, hidden): the query of each user's stored history
    _item_vectors: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._item_vectors = self.model.item_embeddings()  # read once: every request scores against them

    @property
    def max_len(self) -> int:
        return self.model.config.max_len

    def query(self, sequence: np.ndarray) -> np.ndarray:
        """(hidden,) float32: the index query for one user's item sequence (oldest first); one
        torch thread, as a request runs."""
        encoded: np.ndarray = self.model.encode([np.asarray(sequence, dtype=np.int64)[-self.max_len:]], threads=1)[0]
        return encoded

    def queries(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """(len(sequences), hidden) float32 queries for many users (training, evaluation)."""
        return self.model.encode(sequences)

    def item_vectors(self) -> np.ndarray:
        """(n_items, hidden) float32: the indexed item embeddings (the logits' weights)."""
        return self._item_vectors

    def with_user_queries(self, history: Histories) -> SequentialSource:
        """This source with every user's query for their row of `history` precomputed (zeros for
        a user without one)."""
        queries = self.queries([history.of(u) for u in range(history.n_users)])
        return SequentialSource(self.model, self.index, self.n_candidates, queries)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, item indices) best first, as `ItemIndex.search`."""
        return self.index.search(queries, k)

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / MODEL_FILE)
        self.index.save(directory / INDEX_DIR)
        if self.user_queries is not None:
            np.save(directory / USER_QUERIES_FILE, np.asarray(self.user_queries, dtype=np.float32))
        (directory / SOURCE_FILE).write_text(json.dumps({"n_candidates": self.n_candidates, "kind": "sasrec"}, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> SequentialSource:
        """The source saved in `directory`; RetrievalError naming the file when one is missing or bad."""
        directory = Path(directory)
        for name in (MODEL_FILE, INDEX_DIR, SOURCE_FILE):
            if not (directory / name).exists():
                raise RetrievalError(f"{directory / name}: missing (a sequential source needs {MODEL_FILE}, "
                                     f"{INDEX_DIR}/ and {SOURCE_FILE})")
        try:
            meta = json.loads((directory / SOURCE_FILE).read_text())
            n_candidates = int(meta["n_candidates"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RetrievalError(f"{directory / SOURCE_FILE}: unreadable ({exc})") from None
        model = SASRecPlus.load(directory / MODEL_FILE)
        index = ItemIndex.load(directory / INDEX_DIR, mmap=True)  # read-only and shared, like the catalog's
        if index.n_items != len(model.item_embeddings()):
            raise RetrievalError(f"{directory / INDEX_DIR}: {index.n_items} items, the model has "
                                 f"{len(model.item_embeddings())}")
        user_queries = None
        if (directory / USER_QUERIES_FILE).exists():
            user_queries = np.load(directory / USER_QUERIES_FILE, allow_pickle=False, mmap_mode="r")
            if user_queries.ndim != 2 or user_queries.shape[1] != model.config.hidden:
                raise RetrievalError(f"{directory / USER_QUERIES_FILE}: shape {user_queries.shape}, expected (users, "
                                     f"{model.config.hidden})")
        return cls(model, index, n_candidates, user_queries)


def fit_sequential(history: Histories, config: SASRecConfig, index_config: IndexConfig,
                   n_candidates: int) -> SequentialSource:
    """Fit SASRec+ on `history` (time-ordered positives) and index its item embeddings; the index's
    recall is calibrated with the users' own queries at the depth the source retrieves."""
    model = SASRecPlus(config).fit(history)
    active = np.flatnonzero(history.lengths > 0)
    sample = active[:: max(1, len(active) // max(1, index_config.sample_queries))]
    queries = model.encode([history.of(int(u)) for u in sample])
    index = build_index(model.item_embeddings(), config=index_config.model_copy(update={"recall_k": n_candidates}),
                        sample_queries=queries)
    return SequentialSource(model, index, n_candidates)
