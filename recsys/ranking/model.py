"""Rankers: score a request's candidates from their feature matrix; a registry of kinds by name.

A ranker is trained on lists (one per user: candidates from the retrieval stage, their features
and binary labels) and saved as plain tensors plus its config (`ranker.pt`, loadable with
`weights_only=True`). Adding a ranker: one module with a `Ranker` subclass and one entry in
`RANKERS` ("name" -> "module:Class").
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

RANKERS: dict[str, str] = {
    "mlp": "recsys.ranking.model:MLPRanker",
}


class RankerError(ValueError):
    """Bad ranker input, config or file; the message names it."""


@dataclass(frozen=True)
class RankingLists:
    """Training lists of equal length: features (users, n, f), labels (users, n), mask of real rows,
    and optionally each candidate's groups (users, n, g): its code in each of g groupings (e.g. its
    primary category, the editorial pool), -1 for none, for a ranker's within-group loss."""

    features: np.ndarray  # float32
    labels: np.ndarray  # float32 in {0, 1}
    mask: np.ndarray  # bool; False pads lists shorter than n
    groups: np.ndarray | None = None  # int32 (users, n, g)

    def __post_init__(self) -> None:
        if self.features.ndim != 3 or self.features.shape[:2] != self.labels.shape or self.labels.shape != self.mask.shape:
            raise RankerError(
                f"RankingLists: features {self.features.shape}, labels {self.labels.shape}, mask {self.mask.shape} do not align"
            )
        if self.groups is not None and (self.groups.ndim != 3 or self.groups.shape[:2] != self.labels.shape):
            raise RankerError(f"RankingLists: groups {self.groups.shape} do not align with labels {self.labels.shape}")

    def subset(self, rows: np.ndarray) -> RankingLists:
        groups = None if self.groups is None else self.groups[rows]
        return RankingLists(self.features[rows], self.labels[rows], self.mask[rows], groups)


class Ranker(abc.ABC):
    """Scores candidates from features; higher is better."""

    kind: ClassVar[str]
    config_type: ClassVar[type[BaseModel]]  # the typed parameters of this kind

    def __init__(self, feature_names: list[str], config: dict[str, Any] | BaseModel | None = None, seed: int = 0):
        """Every kind is built from its feature names, its config (a dict or its `config_type`) and a seed."""
        self.feature_names = list(feature_names)

    @abc.abstractmethod
    def fit(self, train: RankingLists, valid: RankingLists | None = None) -> dict[str, float]:
        """Learn from training lists; return a few training figures (loss, epochs)."""

    @abc.abstractmethod
    def score(self, features: np.ndarray) -> np.ndarray:
        """float32 scores for a (n_candidates, n_features) matrix."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """Config and tensors only (no code objects), so the file loads with weights_only=True."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, state: dict[str, Any], feature_names: list[str]) -> Ranker: ...

    def save(self, path: Path) -> Path:
        torch.save({"kind": self.kind, "feature_names": self.feature_names, **self.state()}, Path(path))
        return Path(path)

    def _check(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise RankerError(f"features: expected shape (n, {len(self.feature_names)}), got {features.shape}")
        return features


def _unchanged(network: nn.Module) -> nn.Module:
    return network


def _alone(figure: float) -> float:
    return figure


@dataclass(frozen=True)
class Replica:
    """One of `world_size` data-parallel copies of a ranker in training (DDP), or the only one.

    Every replica draws the same list order (same seed) and computes the gradient of its slice of
    each batch (`rank::world_size`); `wrap` puts the network behind the gradient all-reduce
    (e.g. DistributedDataParallel) and `total` sums a figure over the replicas. The loss is scaled
    so that the averaged gradient is that of the whole batch: one process and N replicas take the
    same optimisation steps, up to float rounding.
    """

    rank: int = 0
    world_size: int = 1
    wrap: Callable[[nn.Module], nn.Module] = field(default=_unchanged)
    total: Callable[[float], float] = field(default=_alone)

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise RankerError(f"replica: rank {self.rank} outside a world of {self.world_size}")

    def share(self, rows: torch.Tensor) -> torch.Tensor:
        """This replica's slice of a batch of list indices."""
        return rows[self.rank :: self.world_size]


def ranker_class(kind: str) -> type[Ranker]:
    if kind not in RANKERS:
        raise RankerError(f"ranker kind: unknown {kind!r}; known: {', '.join(sorted(RANKERS))}")
    module, name = RANKERS[kind].split(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Ranker)):
        raise RankerError(f"ranker kind {kind!r}: {RANKERS[kind]} is not a Ranker subclass")
    return cls


def make_ranker(kind: str, feature_names: list[str], config: dict[str, Any] | None = None, seed: int = 0) -> Ranker:
    return ranker_class(kind)(feature_names, config=config or {}, seed=seed)


def load_ranker(path: Path) -> Ranker:
    path = Path(path)
    if not path.exists():
        raise RankerError(f"{path}: no ranker file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RankerError(f"{path}: not a ranker file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "kind" not in state:
        raise RankerError(f"{path}: not a ranker file (no 'kind')")
    return ranker_class(state["kind"]).from_state(state, list(state["feature_names"]))


# -- the MLP ranker ---------------------------------------------------------------------------


class MLPConfig(BaseModel):
    """A small MLP over standardised features, trained with a listwise softmax loss."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: tuple[int, ...] = (64, 32)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    epochs: int = Field(default=40, ge=1)
    batch_lists: int = Field(default=64, ge=1)  # user lists per optimisation step
    patience: int = Field(default=6, ge=1)  # epochs without validation improvement before stopping
    # Weight of the within-group term (`_group_losses`): the same softmax loss inside each group of
    # a list (each primary category, the editorial pool) that holds a positive. The policy fills a
    # page with the best few of each category and the pool's best items, so it ranks by order
    # within those groups as much as by the list's order; 0 trains on the whole list only.
    group_loss: float = Field(default=0.0, ge=0.0)


class _Network(nn.Module):
    mean: torch.Tensor  # buffers: the training rows' feature mean and spread, saved with the weights
    scale: torch.Tensor

    def __init__(self, n_features: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.body((features - self.mean) / self.scale).squeeze(-1)
        return scores


class MLPRanker(Ranker):
    """Feed-forward scorer; the listwise loss is softmax cross-entropy against the list's positives."""

    kind = "mlp"
    config_type = MLPConfig

    def __init__(self, feature_names: list[str], config: dict[str, Any] | MLPConfig | None = None, seed: int = 0):
        super().__init__(feature_names)
        self.config = config if isinstance(config, MLPConfig) else MLPConfig(**(config or {}))
        self.seed = seed
        torch.manual_seed(seed)
        self.network = _Network(len(self.feature_names), self.config.hidden, self.config.dropout)
        self.network.eval()
        self._inference: _Inference | None = None  # the weights' tensors, taken on the first `score`

    def fit(self, train: RankingLists, valid: RankingLists | None = None,
            replica: Replica | None = None) -> dict[str, float]:
        """Train on `train`, early-stopping on `valid`; as one `replica` of a data-parallel group
        when given (each replica holds all lists and computes its share of every batch)."""
        config = self.config
        replica = replica or Replica()
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        rows = train.features[train.mask]
        self.network.mean.copy_(torch.from_numpy(rows.mean(axis=0)))
        self.network.scale.copy_(torch.from_numpy(np.maximum(rows.std(axis=0), 1e-6)))
        network = replica.wrap(self.network)
        features, labels, mask = (torch.from_numpy(a) for a in (train.features, train.labels, train.mask))
        groups = _group_tensor(train, config.group_loss)
        optimiser = torch.optim.Adam(self.network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        best, best_state, stale, epoch, loss_value = np.inf, None, 0, 0, float("nan")
        for epoch in range(1, config.epochs + 1):
            network.train()
            order = torch.randperm(len(features), generator=generator)  # the same on every replica
            total = 0.0
            for start in range(0, len(order), config.batch_lists):
                batch = order[start : start + config.batch_lists]
                mine = replica.share(batch)
                scores = network(features[mine])
                losses = _list_losses(scores, labels[mine], mask[mine])
                if groups is not None:
                    losses = losses + config.group_loss * _group_losses(scores, labels[mine], mask[mine], groups[mine])
                # The all-reduce averages replicas' gradients: scaled so the average is the batch mean's.
                loss = losses.sum() / (len(batch) / replica.world_size)
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]  # torch declares Tensor.backward without annotations
                optimiser.step()
                total += float(losses.detach().sum())
            loss_value = replica.total(total) / len(order)
            if valid is None:
                continue
            current = self.loss(valid, replica)
            if current < best - 1e-5:
                best, stale = current, 0
                best_state = {k: v.clone() for k, v in self.network.state_dict().items()}
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best_state is not None:
            self.network.load_state_dict(best_state)
        self.network.eval()
        self._inference = None
        return {"train_loss": loss_value, "valid_loss": float(best), "epochs": float(epoch)}

    def loss(self, lists: RankingLists, replica: Replica | None = None) -> float:
        """Mean listwise loss over `lists` (a `replica` scores its share; the sum is over all)."""
        replica = replica or Replica()
        self.network.eval()
        with torch.inference_mode():
            mine = replica.share(torch.arange(len(lists.labels)))
            features, labels, mask = (torch.from_numpy(a)[mine] for a in (lists.features, lists.labels, lists.mask))
            return replica.total(float(_list_losses(self.network(features), labels, mask).sum())) / len(lists.labels)

    def score(self, features: np.ndarray) -> np.ndarray:
        """The network's forward pass for one request (`_Inference`: the module's exact scores, in
        half its time for a few hundred rows)."""
        features = self._check(features)
        if self._inference is None:
            self._inference = _Inference.of(self.network)
        return self._inference(features)

    def score_lists(self, features: np.ndarray) -> np.ndarray:
        """Scores of a (users, n, f) batch of lists, for offline evaluation."""
        with torch.inference_mode():
            scores: np.ndarray = self.network(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()
        return scores

    def state(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "seed": self.seed,
            "state_dict": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], feature_names: list[str]) -> MLPRanker:
        ranker = cls(feature_names, config=state["config"], seed=int(state.get("seed", 0)))
        try:
            ranker.network.load_state_dict(state["state_dict"])
        except (RuntimeError, KeyError) as exc:
            raise RankerError(f"ranker.pt: weights do not match the config ({exc})") from None
        ranker.network.eval()
        ranker._inference = None
        return ranker


@dataclass(frozen=True)
class _Inference:
    """An evaluation-mode `_Network` as a plain sequence of torch calls on detached tensors: the
    same kernels in the same order as `_Network.forward` (F.linear on a matrix is `addmm`), so the
    scores are bit for bit the module's, without nn.Module dispatch or autograd bookkeeping.
    (A numpy forward was faster still but summed in another order: about 1e-6 apart, enough to
    swap two near-tied candidates for 1 user in 943 on MovieLens-100K.)"""

    mean: torch.Tensor
    scale: torch.Tensor
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (weight transposed, bias) per Linear

    @classmethod
    def of(cls, network: _Network) -> _Inference:
        layers = tuple((m.weight.detach().t(), m.bias.detach()) for m in network.body if isinstance(m, nn.Linear))
        return cls(network.get_buffer("mean").detach(), network.get_buffer("scale").detach(), layers)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        hidden = (torch.from_numpy(features) - self.mean) / self.scale
        last = len(self.layers) - 1
        for n, (weight, bias) in enumerate(self.layers):
            hidden = torch.addmm(bias, hidden, weight)
            if n < last:
                hidden = torch.relu(hidden)
        return np.asarray(hidden.squeeze(-1).numpy(), dtype=np.float32)  # float32 already: no copy


def _list_losses(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per list: -sum_i y_i log softmax(s)_i / sum_i y_i (padded rows excluded)."""
    scores = scores.masked_fill(~mask, -1e9)
    log_probs = torch.log_softmax(scores, dim=-1)
    positives = labels.sum(dim=-1).clamp_min(1.0)
    return -(labels * log_probs).sum(dim=-1) / positives


def _group_tensor(lists: RankingLists, weight: float) -> torch.Tensor | None:
    """The lists' groups as a long tensor when the group term is on and the lists carry groups."""
    if not weight or lists.groups is None or not lists.groups.shape[-1]:
        return None
    return torch.from_numpy(lists.groups.astype(np.int64))


def _group_losses(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Per list: the mean, over the (grouping, group) pairs holding a positive, of the softmax loss
    restricted to that group's candidates (`_list_losses` inside each group); 0 for a list without
    any. groups: (lists, n, g) codes, -1 for none."""
    total = torch.zeros(scores.shape[0], dtype=scores.dtype)
    counted = torch.zeros(scores.shape[0], dtype=scores.dtype)
    for column in range(groups.shape[-1]):
        codes = groups[..., column]
        width = int(codes.max()) + 1
        if width <= 0:
            continue
        member = torch.nn.functional.one_hot((codes + 1).clamp_min(0), width + 1)[..., 1:].bool()  # (lists, n, c)
        member = (member & mask.unsqueeze(-1)).transpose(1, 2)  # (lists, c, n)
        positives = (labels.unsqueeze(1) * member).sum(dim=-1)  # (lists, c)
        held = positives > 0
        log_probs = torch.log_softmax(scores.unsqueeze(1).masked_fill(~member, -1e9), dim=-1)
        loss = -(labels.unsqueeze(1) * member * log_probs).sum(dim=-1) / positives.clamp_min(1.0)
        total = total + (loss * held).sum(dim=-1)
        counted = counted + held.sum(dim=-1)
    return total / counted.clamp_min(1.0)
