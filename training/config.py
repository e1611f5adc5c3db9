"""The training configuration: every hyper-parameter of both stages in one typed object.

Defaults are the values chosen on the validation split (never on test). A JSON or TOML file
overrides any subset (`recsys train --config FILE`); its hash identifies the model for `--reuse`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compliance.review import ReviewConfig
from recsys.ranking.features import FeatureConfig
from recsys.ranking.model import RANKERS, MLPConfig, ranker_class
from recsys.retrieval import MODELS
from recsys.retrieval.als import ALSConfig
from recsys.retrieval.baselines import EASEConfig, ItemKNNConfig
from recsys.retrieval.index import IndexConfig
from recsys.retrieval.sasrec import SASRecConfig


class SequentialConfig(BaseModel):
    """The second candidate source (recsys/retrieval/sequential.py): a SASRec+ model trained on the
    users' time-ordered positives, its own Faiss index, `n_candidates` items per request merged
    with ALS's. `enabled = false` switches it off: ALS alone retrieves, the bundle carries no
    sequential model and the ranker's sequential features are zero.

    Defaults: chosen for the 3-minute training budget on two cores (a 50-item window, 64 dims,
    2 blocks, a fixed epoch count, one fit for the ranker's validation split and one for the
    served model); measured on and off in README "Quality"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    n_candidates: int = Field(default=100, ge=1)
    sasrec: SASRecConfig = SASRecConfig(max_len=50, hidden=64, blocks=2, dropout=0.5, epochs=20, threads=1)

BASELINES = tuple(MODELS)  # every retrieval model can be evaluated next to the two-stage model


class ConfigError(ValueError):
    """The training config file or a field in it is invalid; the message names both."""


class ProtocolConfig(BaseModel):
    """The offline protocol (docs/DESIGN.md). Changing it makes numbers incomparable with peers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rating: float = 4.0
    test_share: float = Field(default=0.2, gt=0.0, lt=1.0)
    k: int = Field(default=10, ge=1)


class RankerConfig(BaseModel):
    """The ranker kind (a name in `recsys.ranking.model.RANKERS`) and that kind's parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "mlp"
    params: dict[str, Any] = Field(default_factory=lambda: MLPConfig().model_dump(mode="json"))
    early_stopping_share: float = Field(default=0.15, gt=0.0, lt=1.0)  # of the validation lists
    # The served path's non-personalized sources join the training lists as they join a request's
    # candidates: the `popular_candidates` most popular items and as many of the editorial pool
    # (serving's POPULAR_CANDIDATES), so the ranker also learns to order the items the front screen
    # draws from; 0: the retrieval sources' candidates only.
    popular_candidates: int = Field(default=0, ge=0)

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in RANKERS:
            raise ValueError(f"unknown ranker kind {value!r}; known: {', '.join(sorted(RANKERS))}")
        return value

    @model_validator(mode="after")
    def _params_fit_kind(self) -> RankerConfig:
        ranker_class(self.kind).config_type.model_validate(self.params)  # the kind's own config checks them
        return self


class TrainingConfig(BaseModel):
    """Both stages' hyper-parameters, the index, the evaluation and the seed of one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retrieval: Literal["als"] = "als"  # the factor model behind the Faiss index
    als: ALSConfig = ALSConfig()
    n_candidates: int = Field(default=200, ge=1)  # retrieval top-N the ranker reorders
    sequential: SequentialConfig = SequentialConfig()  # the second candidate source; enabled = false: ALS only
    index: IndexConfig = IndexConfig()
    ranker: RankerConfig = RankerConfig()
    features: FeatureConfig = FeatureConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    baselines: tuple[str, ...] = ("popular", "als")  # evaluated next to the two-stage model
    itemknn: ItemKNNConfig = ItemKNNConfig()
    ease: EASEConfig = EASEConfig()
    review: ReviewConfig = ReviewConfig()  # the periodic review's thresholds (Art. 8); see training.review
    seed: int = 0  # seeds ALS, the index's k-means and the ranker
    seeds: tuple[int, ...] = (0, 1, 2)  # the benchmark's repetitions

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [b for b in value if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINES)}")
        return value

    def with_seed(self, seed: int) -> TrainingConfig:
        sequential = self.sequential.model_copy(update={"sasrec": self.sequential.sasrec.model_copy(update={"seed": seed})})
        return self.model_copy(update={"seed": seed, "als": self.als.model_copy(update={"seed": seed}),
                                       "index": self.index.model_copy(update={"seed": seed}), "sequential": sequential})

    def effective(self) -> TrainingConfig:
        """The config with `seed` pushed into the components it seeds, and the index's recall
        calibrated at the depth the ranker consumes (`n_candidates`), the depth serving retrieves."""
        seeded = self.with_seed(self.seed)
        return seeded.model_copy(update={"index": seeded.index.model_copy(update={"recall_k": self.n_candidates})})

    def config_hash(self, full: bool = False) -> str:
        """Short hash of everything that changes the trained model (not progress display)."""
        payload = self.effective().model_dump(mode="json")
        payload["als"].pop("show_progress", None)
        payload.pop("seeds", None)
        payload["full"] = full
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def flat_params(self) -> dict[str, str]:
        """Dotted key -> value, for MLflow params."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, inner)
            else:
                out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)

        walk("", self.effective().model_dump(mode="json"))
        return out


def load_config(path: Path | None, **overrides: Any) -> TrainingConfig:
    """Read a JSON or TOML config file (or the defaults when `path` is None), then apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--config: {path}: no such file")
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config: {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "config"
        source = f"{path}: " if path is not None else ""
        raise ConfigError(f"--config: {source}field {where}: {error['msg']}") from None
