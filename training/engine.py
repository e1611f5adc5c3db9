"""Training engines: where the training pipeline reads its data and fits its two models.

`training.pipeline` is written once; an engine is the small strategy it calls for the three steps
that can run elsewhere: read the dataset's frames, fit ALS, fit the ranker. `LocalEngine` does
them in this process; `training.ray_engine.RayEngine` on a Ray cluster (Ray Data, a Ray task,
Ray Train's TorchTrainer). Adding an engine: one module with an `Engine` subclass and one entry
in `ENGINES`.
"""

from __future__ import annotations

import abc
import importlib
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from scipy.sparse import csr_matrix

from recsys.datasets import load
from recsys.ranking.model import Ranker, RankingLists
from recsys.retrieval.als import ALS, ALSConfig
from recsys.schema import Dataset

ENGINES: dict[str, str] = {
    "local": "training.engine:LocalEngine",
    "ray": "training.ray_engine:RayEngine",
}


class EngineError(ValueError):
    """An engine cannot start or run (not installed, unreachable, unsupported ranker); the message
    names the flag at fault."""


class Engine(abc.ABC):
    """The steps of the training pipeline that an engine runs; a context manager holding whatever
    the engine connects to (entering twice is allowed: the outermost `with` owns the connection)."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self._depth = 0

    @abc.abstractmethod
    def read(self, source: str | Path) -> Dataset:
        """The dataset named `source` (a known name or a folder of the schema's Parquet files), validated."""

    @abc.abstractmethod
    def fit_als(self, user_items: csr_matrix, config: ALSConfig) -> ALS:
        """ALS fitted on a binary (users x items) matrix of positives."""

    @abc.abstractmethod
    def fit_ranker(self, ranker: Ranker, train: RankingLists, valid: RankingLists | None) -> tuple[Ranker, dict[str, float]]:
        """(the fitted ranker, its training figures) from an unfitted `ranker`, early-stopping on `valid`."""

    def describe(self) -> dict[str, str]:
        """What to record with the run (MLflow params `engine*`)."""
        return {"engine": self.name}

    def start(self) -> None:
        """Connect to or start what the engine runs on (nothing for the local engine)."""

    def stop(self) -> None:
        """Release what `start` acquired."""

    def __enter__(self) -> Engine:
        if self._depth == 0:
            self.start()
        self._depth += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.stop()


class LocalEngine(Engine):
    """Everything in this process: polars reads the Parquet files, implicit fits ALS on this
    machine's cores, the ranker trains in one torch process."""

    name = "local"

    def read(self, source: str | Path) -> Dataset:
        return load(source)

    def fit_als(self, user_items: csr_matrix, config: ALSConfig) -> ALS:
        return ALS(config).fit(user_items)

    def fit_ranker(self, ranker: Ranker, train: RankingLists, valid: RankingLists | None) -> tuple[Ranker, dict[str, float]]:
        return ranker, ranker.fit(train, valid)


def make_engine(name: str, **options: Any) -> Engine:
    """The engine called `name` built with its options (e.g. ray: address, workers)."""
    if name not in ENGINES:
        raise EngineError(f"--engine: unknown engine {name!r}; known: {', '.join(ENGINES)}")
    module, attribute = ENGINES[name].split(":")
    engine_class: type[Engine] = getattr(importlib.import_module(module), attribute)
    return engine_class(**options)
