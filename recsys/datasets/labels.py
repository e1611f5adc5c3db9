"""Item label rules kept as files under data/labels/: one reproducible rule set per dataset.

A rule file (TOML) says which categories make an item unsafe for minors, which editorial CSV
lists the mainstream pool, and which item ids are synthetic or flagged. See
data/labels/movielens-100k.toml for the documented example.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import polars as pl

from recsys.schema import SchemaError


def load_rules(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SchemaError(f"{path}: label rule file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{path}: not valid TOML ({exc})") from None


def apply_label_rules(items: pl.DataFrame, rules_path: Path) -> pl.DataFrame:
    """Return `items` with the boolean label columns set by the rules in `rules_path`."""
    rules = load_rules(rules_path)
    minor = rules.get("minor_safe", {})
    unsafe = list(minor.get("unsafe_categories", []))
    safe = list(minor.get("safe_categories", []))
    minor_safe = ~pl.col("categories").list.eval(pl.element().is_in(unsafe)).list.any()
    if safe:
        minor_safe = minor_safe | pl.col("categories").list.eval(pl.element().is_in(safe)).list.any()

    pool_ids: list[str] = []
    pool_csv = rules.get("mainstream", {}).get("pool_csv")
    if pool_csv:
        pool_path = rules_path.parent.parent / pool_csv if not Path(pool_csv).is_absolute() else Path(pool_csv)
        try:
            pool = pl.read_csv(pool_path, schema_overrides={"item_id": pl.Utf8})
        except FileNotFoundError:
            raise SchemaError(f"{pool_path}: editorial pool file not found (named in {rules_path})") from None
        if "item_id" not in pool.columns:
            raise SchemaError(f"{pool_path}: missing column 'item_id'")
        pool_ids = pool.get_column("item_id").to_list()

    synthetic_ids = [str(i) for i in rules.get("synthetic", {}).get("item_ids", [])]
    flagged_ids = [str(i) for i in rules.get("flagged", {}).get("item_ids", [])]
    return items.with_columns(
        minor_safe=minor_safe,
        mainstream=pl.col("item_id").is_in(pool_ids),
        synthetic=pl.col("item_id").is_in(synthetic_ids),
        flagged=pl.col("item_id").is_in(flagged_ids),
    )
