"""SASRec+ : a causal self-attention sequence model trained with full softmax cross-entropy.

SASRec (Kang & McAuley, ICDM 2018) reads a user's positives in time order and predicts, at every
position, the next one. The original trains with one sampled negative per positive and binary
cross-entropy; "SASRec+" (Klenitskiy & Vasilev, RecSys 2023) replaces that with the softmax over
the whole catalog, which on its own closes most of the gap to BERT4Rec and later models (gSASRec,
Petrov & Macdonald 2023, reaches the same with sampled negatives and a calibrated loss). The
catalogs this benchmark ranks are small enough for the exact softmax, so this is SASRec+.

Architecture (the paper's, pre-layer-norm): item embeddings tied with the output layer, learned
positional embeddings counted from the most recent item, `blocks` blocks of causal multi-head
self-attention + a position-wise feed-forward layer, a final layer norm. Dropout on the input
embeddings and on each block's two residual branches only: dropout masks on the attention weights
and inside the feed-forward layer cost a third of a CPU epoch for no gain on the validation split. Training
sequences are each user's last `max_len + 1` positives (`fit` gets the protocol's time-ordered
`Histories`); a user's score vector is the output at their last position times every item
embedding. CPU, one thread by default (`threads`), deterministic for a seed.

`fit(train, monitor=...)` lets a caller pick the number of epochs on a validation split: the monitor
scores the model every `eval_every` epochs, the best state is kept and training stops after
`patience` checks without improvement; `best_epoch` then says how many epochs to refit with.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional

from recsys.evaluation import Histories
from recsys.retrieval.base import HistoryRecommender, RetrievalError, fitted


class SASRecConfig(BaseModel):
    """Hyper-parameters of SASRec+. Defaults: the region the MovieLens-100K validation split favoured
    (max_len 200 over 50, dropout 0.5-0.7 over 0.2-0.3, 64 dims and 2 blocks over 128 dims or 1
    block, Adam 3e-3 in batches of 64: best at 25-35 epochs); `epochs` is tuned per run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_len: int = Field(default=200, ge=2, le=4096)  # most recent positives read per user
    hidden: int = Field(default=64, ge=4, le=1024)
    blocks: int = Field(default=2, ge=1, le=8)
    heads: int = Field(default=1, ge=1, le=16)
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=3e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    batch_size: int = Field(default=64, ge=1)
    epochs: int = Field(default=60, ge=1, le=10_000)  # the maximum with a monitor, the exact count without
    eval_every: int = Field(default=5, ge=1)  # epochs between monitor calls
    patience: int = Field(default=2, ge=1)  # monitor calls without improvement before stopping
    time_limit_s: float | None = Field(default=None, gt=0.0)  # stop training after this long (None: no limit)
    # None: the full softmax over the catalog (SASRec+). N: a sampled softmax against N items drawn
    # uniformly per batch, shared by its rows (catalogs too large for the full softmax on a CPU).
    negatives: int | None = Field(default=None, ge=1)
    threads: int = Field(default=1, ge=1)  # torch intra-op threads during fit and scores
    seed: int = 0


Monitor = Callable[["SASRecPlus"], float]
"""Scores the model being trained (higher is better), e.g. validation NDCG@10."""


class _Block(nn.Module):
    """One pre-layer-norm block: causal multi-head self-attention, then a position-wise feed-forward layer."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden
        self.heads = config.heads
        self.attention_norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.feed_norm = nn.LayerNorm(d)
        self.feed = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        heads = self.heads
        q, k, v = self.qkv(self.attention_norm(x)).view(batch, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attended = functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, d)))
        out: torch.Tensor = x + self.dropout(self.feed(self.feed_norm(x)))
        return out


class _Network(nn.Module):
    """Item and position embeddings, the blocks, a final layer norm; logits tied to the item embeddings."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden
        self.embedding_scale = math.sqrt(config.hidden)
        self.items = nn.Embedding(n_items + 1, d, padding_idx=0)  # item i is token i + 1; 0 pads
        self.positions = nn.Embedding(config.max_len, d)  # 0 = the most recent item
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.blocks))
        self.norm = nn.LayerNorm(d)
        nn.init.normal_(self.items.weight, std=d ** -0.5)
        nn.init.normal_(self.positions.weight, std=d ** -0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch, length, d) of left-padded token rows."""
        length = tokens.shape[1]
        real = (tokens > 0).unsqueeze(-1)
        reverse = torch.arange(length - 1, -1, -1, device=tokens.device)
        x = self.items(tokens) * self.embedding_scale + self.positions(reverse)
        x = self.dropout(x) * real
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        # A query sees earlier real items and always itself (a pad query then has one finite key).
        allowed = (causal & (tokens > 0)[:, None, :]) | torch.eye(length, dtype=torch.bool, device=tokens.device)
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed) * real
        hidden: torch.Tensor = self.norm(x)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.items.weight[1:].T


def _network(n_items: int, config: SASRecConfig) -> _Network:
    if config.hidden % config.heads:
        raise RetrievalError(f"sasrec: hidden ({config.hidden}) must be a multiple of heads ({config.heads})")
    return _Network(n_items, config)


def _batches(lengths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row batches of similar lengths in random order: rows sorted by log length plus a random
    jitter of +-0.25 (so batches change from epoch to epoch), cut into batches, shuffled. Padding
    to a batch's longest row then wastes little (a random batch pads almost every row to max_len)."""
    key = np.log(np.maximum(lengths, 1)) + rng.uniform(-0.25, 0.25, len(lengths))
    order = np.argsort(key, kind="stable")
    batches = [order[start:start + size] for start in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class SASRecPlus(HistoryRecommender):
    """SASRec with full softmax cross-entropy over the catalog (see the module doc)."""

    name = "sasrec"

    def __init__(self, config: SASRecConfig | None = None):
        self.config = config or SASRecConfig()
        self.network: _Network | None = None
        self.history: Histories | None = None
        self.best_epoch: int | None = None  # epochs of the kept state
        self.epochs_run = 0
        self.fit_seconds = 0.0
        self.monitor_trace: list[tuple[int, float]] = []  # (epoch, monitor value) when a monitor was given

    # -- data ------------------------------------------------------------------------------------

    def _tokens(self, users: np.ndarray, history: Histories, length: int) -> np.ndarray:
        """Left-padded (len(users), length) tokens of each user's last `length` positives."""
        out = np.zeros((len(users), length), dtype=np.int64)
        for row, user in enumerate(users):
            items = history.of(int(user))[-length:]
            if len(items):
                out[row, length - len(items):] = items + 1
        return out

    def _training_rows(self, train: Histories) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), both (n, max_len) left-padded: inputs are tokens, targets the next item
        index at each position (-1 where there is none)."""
        length = self.config.max_len
        users = np.flatnonzero(train.lengths >= 2)
        tokens = self._tokens(users, train, length + 1)
        inputs = tokens[:, :-1]
        targets = tokens[:, 1:] - 1
        targets[inputs == 0] = -1
        return inputs, targets

    # -- fit -------------------------------------------------------------------------------------

    def fit(self, train: Histories, monitor: Monitor | None = None) -> SASRecPlus:
        """Train on each user's time-ordered positives. With `monitor`, keep the best-scoring state
        (checked every `eval_every` epochs, stopping after `patience` checks without improvement)."""
        train = self._check_histories(train)
        config = self.config
        started = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:
            torch.manual_seed(config.seed)
            rng = np.random.default_rng(config.seed)
            self.history = train
            self.network = network = _network(train.n_items, config)
            inputs, targets = self._training_rows(train)
            if not len(inputs):
                raise RetrievalError("train: SASRec needs at least one user with two or more positives")
            lengths = (inputs > 0).sum(axis=1)
            optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate,
                                         weight_decay=config.weight_decay)
            best, stale = -math.inf, 0
            best_state: dict[str, torch.Tensor] | None = None
            self.monitor_trace, self.best_epoch, self.epochs_run = [], None, 0
            for epoch in range(1, config.epochs + 1):
                network.train()
                for rows in _batches(lengths, config.batch_size, rng):
                    width = int(lengths[rows].max())  # pad to the batch's longest row only
                    batch_inputs = torch.from_numpy(inputs[rows, -width:])
                    batch_targets = torch.from_numpy(targets[rows, -width:])
                    hidden = network(batch_inputs)
                    mask = batch_targets >= 0
                    loss = self._loss(network, hidden[mask], batch_targets[mask], train.n_items)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]  # torch declares Tensor.backward without annotations
                    optimizer.step()
                self.epochs_run = epoch
                out_of_time = config.time_limit_s is not None and time.perf_counter() - started > config.time_limit_s
                if monitor is not None and (epoch % config.eval_every == 0 or epoch == config.epochs or out_of_time):
                    value = float(monitor(self))
                    self.monitor_trace.append((epoch, value))
                    if value > best:
                        best, stale, self.best_epoch = value, 0, epoch
                        best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
                    else:
                        stale += 1
                        if stale >= config.patience:
                            break
                if out_of_time:
                    break
            if best_state is not None:
                network.load_state_dict(best_state)
            else:
                self.best_epoch = self.epochs_run
            network.eval()
        finally:
            torch.set_num_threads(threads)
        self.fit_seconds = time.perf_counter() - started
        return self

    def _loss(self, network: _Network, hidden: torch.Tensor, targets: torch.Tensor, n_items: int) -> torch.Tensor:
        """Cross-entropy of the next item: over the whole catalog, or (`negatives`) over the target
        and a batch-shared uniform sample of items."""
        negatives = self.config.negatives
        if negatives is None or negatives >= n_items:
            return functional.cross_entropy(network.logits(hidden), targets)
        sampled = torch.randint(1, n_items + 1, (negatives,))
        positive = (hidden * network.items(targets + 1)).sum(dim=-1, keepdim=True)
        logits = torch.cat([positive, hidden @ network.items(sampled).T], dim=1)
        return functional.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))

    # -- scores ----------------------------------------------------------------------------------

    def scores(self, user_idx: np.ndarray) -> np.ndarray:
        """The next-item logits after each user's training sequence, (len(user_idx), n_items)."""
        history = fitted(self, self.history)
        users = np.asarray(user_idx, dtype=np.int64)
        out = self.encode([history.of(int(u)) for u in users]) @ self.item_embeddings().T
        return np.asarray(out, dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        """(n_items, hidden) float32: the output layer's item vectors (tied with the input
        embeddings). A user's logits are `encode(...)` times these, so an inner-product index over
        them retrieves the model's top items."""
        network = fitted(self, self.network)
        return np.ascontiguousarray(network.items.weight[1:].detach().numpy(), dtype=np.float32)

    def encode(self, sequences: Sequence[np.ndarray], threads: int | None = None) -> np.ndarray:
        """(len(sequences), hidden) float32: the hidden state after each item sequence (item
        indices, oldest first; the last `max_len` are read), the query of `item_embeddings`. An
        empty sequence gives zeros. `threads` (default `config.threads`) bounds torch's pool."""
        network = fitted(self, self.network)
        length = self.config.max_len
        out = np.zeros((len(sequences), self.config.hidden), dtype=np.float32)
        threads_before = torch.get_num_threads()
        wanted = threads or self.config.threads
        if wanted != threads_before:
            torch.set_num_threads(wanted)
        was_training = network.training
        network.eval()
        try:
            for start in range(0, len(sequences), 256):
                batch = [np.asarray(s, dtype=np.int64)[-length:] for s in sequences[start:start + 256]]
                width = max(1, max(len(s) for s in batch))
                tokens = np.zeros((len(batch), width), dtype=np.int64)
                for row, items in enumerate(batch):
                    if len(items):
                        tokens[row, width - len(items):] = items + 1
                real = tokens[:, -1] > 0
                with torch.inference_mode():
                    hidden = network(torch.from_numpy(tokens))[:, -1]
                out[start:start + len(batch)] = hidden.numpy() * real[:, None]
            return out
        finally:
            network.train(was_training)
            if wanted != threads_before:
                torch.set_num_threads(threads_before)

    # -- persistence (a bundle stores tensors and plain values, never pickled code) ---------------

    def save(self, path: Path) -> Path:
        """Write the configuration, the catalog size and the network's tensors to `path`."""
        network = fitted(self, self.network)
        torch.save({"config": self.config.model_dump(mode="json"), "n_items": int(network.items.num_embeddings - 1),
                    "best_epoch": self.best_epoch, "state": network.state_dict()}, Path(path))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> SASRecPlus:
        """A fitted model from `save`'s file, for encoding sequences (no training history). The
        tensors stay mapped from the file (torch.load mmap, assigned, never copied; the network is
        built on the meta device first): serving workers of one host share the item embeddings'
        pages as they share the catalog's, and nothing writes them (inference only)."""
        try:
            saved = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
            model = cls(SASRecConfig(**saved["config"]))
            with torch.device("meta"):
                network = _network(int(saved["n_items"]), model.config)
            network.load_state_dict(saved["state"], assign=True)
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise RetrievalError(f"{path}: not a saved SASRec+ model ({' '.join(str(exc).split())[:200]})") from None
        network.eval()
        model.network = network
        model.best_epoch = saved.get("best_epoch")
        return model
