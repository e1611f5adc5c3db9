"""Where the policy's price on a first page goes: the quality benchmark's anatomy tables.

A rule's price is what it takes from the unconstrained first page: the items it pushes out of the
top k and the items it brings in, and how often each is one of the user's held-out films (a hit).
For each rule alone (every other switchable rule off) and for the whole policy, measured against
the page with every switchable rule off, `list_changes` counts per list the items dropped and
added and their hit rates, the editorial items added apart.

`editorial_picks` asks whether a better choice of editorial items could lower the front screen's
price. For the users whose unconstrained page holds fewer editorial items than the front screen
requires, it compares the hit rate of the editorial items each scorer would add (the served
ranker, the retrieval model, popularity, chance, and an oracle that knows the held-out films: an
upper bound no model reaches) with the hit rate of the items they displace (the last places of
the unconstrained page, where the ranking puts an item it scores below the page).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recsys.evaluation import Histories, _hits

PICKERS = ("served ranker", "retrieval (ALS)", "popularity", "chance", "oracle (knows the held-out films)")


def _keys(lists: np.ndarray, n_items: int) -> np.ndarray:
    """One key per (row, item) of `lists`, -1 for padding: membership tests per row in one np.isin."""
    rows = np.repeat(np.arange(len(lists), dtype=np.int64), lists.shape[1])
    flat = lists.reshape(-1).astype(np.int64)
    return np.where(flat >= 0, rows * n_items + flat, -1)


def _rate(hits: np.ndarray, where: np.ndarray) -> float:
    count = int(where.sum())
    return float(hits[where].sum() / count) if count else float("nan")


def list_changes(base: np.ndarray, changed: np.ndarray, users: np.ndarray, test: Histories,
                 editorial: np.ndarray) -> dict[str, float]:
    """What `changed` did to `base` (rows align with `users`; -1 pads): per list, the items it
    dropped and added and the share of each that are held-out films; editorial items added apart."""
    if base.shape != changed.shape or len(base) != len(users):
        raise ValueError(f"list_changes: base {base.shape}, changed {changed.shape}, {len(users)} users")
    n_items = test.n_items
    base_keys, changed_keys = _keys(base, n_items), _keys(changed, n_items)
    dropped = (base_keys >= 0) & ~np.isin(base_keys, changed_keys)
    added = (changed_keys >= 0) & ~np.isin(changed_keys, base_keys)
    added_editorial = added & editorial[np.maximum(changed.reshape(-1), 0)]
    base_hits = _hits(base, users, test).reshape(-1)
    changed_hits = _hits(changed, users, test).reshape(-1)
    n = max(len(base), 1)
    return {"dropped_per_list": float(dropped.sum() / n), "dropped_hit_rate": _rate(base_hits, dropped),
            "added_per_list": float(added.sum() / n), "added_hit_rate": _rate(changed_hits, added),
            "editorial_added_per_list": float(added_editorial.sum() / n),
            "editorial_added_hit_rate": _rate(changed_hits, added_editorial)}


def editorial_picks(path, base: np.ndarray, users: np.ndarray, histories: Sequence[np.ndarray],
                    seen: Sequence[np.ndarray], test: Histories, editorial: np.ndarray, required: int,
                    popularity: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """For users whose unconstrained page `base` holds fewer than `required` editorial items: the hit
    rate of the items each of `PICKERS` would add from the editorial candidates the served path
    scored (`path`: a `training.review.OfflineServing`), and of the page's last items they displace."""
    rng = np.random.default_rng(seed)
    bundle = path.bundle
    hits = {name: 0 for name in PICKERS}
    picked = displaced_hits = short = 0
    for row, user in enumerate(np.asarray(users)):
        page = base[row][base[row] >= 0]
        need = required - int(editorial[page].sum())
        if need <= 0:
            continue
        items, scores = path.scored(histories[row], seen[row])
        pool = editorial[items] & ~np.isin(items, page)
        if not pool.any():
            continue
        short += 1
        candidates, ranker_scores = items[pool], scores[pool]
        need = min(need, len(candidates))
        truth = np.isin(candidates, test.of(int(user)))
        vector = bundle.user_vector(np.asarray(histories[row], dtype=np.int64))
        orders = {
            "served ranker": np.argsort(-ranker_scores, kind="stable"),
            "retrieval (ALS)": np.argsort(-(bundle.item_factors[candidates] @ vector), kind="stable"),
            "popularity": np.argsort(-popularity[candidates], kind="stable"),
            "chance": rng.permutation(len(candidates)),
            "oracle (knows the held-out films)": np.argsort(~truth, kind="stable"),
        }
        for name, order in orders.items():
            hits[name] += int(truth[order[:need]].sum())
        picked += need
        displaced_hits += int(np.isin(page[len(page) - need:], test.of(int(user))).sum())
    return {"lists_short": short / max(len(users), 1), "picks_per_short_list": picked / max(short, 1),
            "displaced_hit_rate": displaced_hits / picked if picked else float("nan"),
            "pick_hit_rate": {name: hits[name] / picked if picked else float("nan") for name in PICKERS}}


def mean_over_seeds(values: list[dict]) -> dict:
    """The nan-ignoring mean of every number of equally shaped nested dicts (one per seed)."""
    first = values[0]
    out: dict = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = mean_over_seeds([v[key] for v in values])
        else:
            numbers = np.asarray([v[key] for v in values], dtype=float)
            out[key] = float(np.nanmean(numbers)) if np.isfinite(numbers).any() else float("nan")
    return out


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def markdown_lines(anatomy: dict, k: int) -> list[str]:
    """The two anatomy tables of quality.md (means over seeds)."""
    rules, picks = anatomy["rules"], anatomy["editorial_picks"]
    lines = [f"## Where the price goes (first page of k = {k}; against the page with every switchable rule off)", "",
             "| rules on | NDCG@10 | items dropped / list | their hit rate | items added / list | their hit rate "
             "| editorial added / list | their hit rate |", "| --- |" + " ---: |" * 7]
    for name, row in rules.items():
        lines.append(f"| {name} | {_number(row['ndcg'], 4)} | {_number(row['dropped_per_list'], 2)} | "
                     f"{_number(row['dropped_hit_rate'])} | {_number(row['added_per_list'], 2)} | "
                     f"{_number(row['added_hit_rate'])} | {_number(row['editorial_added_per_list'], 2)} | "
                     f"{_number(row['editorial_added_hit_rate'])} |")
    lines += ["", f"Editorial picks: {100 * picks['lists_short']:.0f} % of unconstrained pages hold fewer editorial "
              f"items than the front screen requires ({_number(picks['picks_per_short_list'], 2)} to add per such page); "
              f"the items they displace (the page's last places) are held-out films at rate "
              f"{_number(picks['displaced_hit_rate'])}. The editorial items each scorer would add:", "",
              "| scorer | hit rate of the added editorial items |", "| --- | ---: |"]
    lines += [f"| {name} | {_number(rate)} |" for name, rate in picks["pick_hit_rate"].items()]
    lines.append("")
    return lines
