"""Item label rules kept as files under data/labels/: one reproducible rule set per dataset.

A rule file (TOML) says how items get their age rating, which editorial CSV lists the mainstream
pool, and which item ids are synthetic or flagged. See data/labels/movielens-100k.toml for the
documented example.

Age rating
----------
`age_rating` is the youngest viewer band allowed to see an item, in the bands of the 2024
minors-mode guideline: 0 (all ages, including under 8), 8, 12, 16, 18 (adults only). A viewer in
the band under 8 / 8-12 / 12-16 / 16-18 / adult sees items rated at most 0 / 8 / 12 / 16 / 18; a
minor of unknown age gets the under-8 band (compliance/minors.py maps a user to a band). The
`[age_rating]` table of a rule file computes it, in this order of precedence:

1. override: a row of the reviewed override CSV (item_id,title,age_rating,reason) whose item_id
   and title match the item sets the rating outright, higher or lower than the rules. The title
   must match (compared lower-cased, punctuation and spacing ignored) so that a CSV written for
   one numbering of the items never rates another film; a frame without a title column gets no
   overrides. `override_mismatches` lists rows whose id names a differently titled item.
2. cap: otherwise, an item with a genre in `genre_caps` is rated at most that cap by the rules
   (a Children's film stays 0 even when also tagged Thriller or titled with a rule word).
3. rules: otherwise the maximum of the genre ratings over the item's genres (a genre missing from
   the table counts as `unlisted_genre`) and of the ratings of every title rule whose
   case-insensitive regular expression matches the title.

`rate_items` returns the per-item working (genre rating, matched title rules, cap, override and
the deciding step) for review; `apply_label_rules` keeps only the resulting label columns.

minor_safe
----------
`minor_safe` is derived, never set by a rule: ``minor_safe = age_rating <= MINOR_SAFE_MAX_RATING``
with MINOR_SAFE_MAX_RATING = 0, i.e. "safe for every minor". It is the one label serving reads
for every minor today, including minors of unknown age (whom compliance/minors.py puts in the
strictest band), so it must hold only what an under-8 viewer may see; per-band serving reads
`age_rating` instead.

Frames from before age ratings
------------------------------
`ensure_age_rating` is the one place an items frame without `age_rating` gets one: 0 where
`minor_safe` is true, 18 where it is false or null (and, the other way round, a frame with
`age_rating` but no `minor_safe` gets the derived label). `recsys.schema.validate` calls it, so
old datasets and frames written by hand still load.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import polars as pl

from recsys.schema import AGE_RATINGS, SchemaError

MINOR_SAFE_MAX_RATING = 0  # minor_safe = age_rating <= this: safe for every minor band
LEGACY_UNSAFE_RATING = 18  # the rating ensure_age_rating gives an item whose minor_safe is false
# Viewer bands of the report: (name, youngest age, highest age rating the band may see); the
# same bands as compliance/minors.py, which maps a user to one at serve time.
VIEWER_BANDS: tuple[tuple[str, int, int], ...] = (
    ("under-8", 0, 0),
    ("8-12", 8, 8),
    ("12-16", 12, 12),
    ("16-18", 16, 16),
    ("adults", 18, 18),
)
OVERRIDE_COLUMNS = ("item_id", "title", "age_rating", "reason")


def load_rules(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SchemaError(f"{path}: label rule file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{path}: not valid TOML ({exc})") from None


# -- age ratings ---------------------------------------------------------------------------------
def minor_safe_from_rating(age_rating: pl.Expr) -> pl.Expr:
    """The derived minor_safe label: the item is fit for every minor band (null rating: not safe)."""
    return (age_rating <= MINOR_SAFE_MAX_RATING).fill_null(False)


def rating_from_minor_safe(minor_safe: pl.Expr) -> pl.Expr:
    """The fallback rating of an item labelled before age ratings: 0 if minor-safe, else 18."""
    return pl.when(minor_safe.fill_null(False)).then(0).otherwise(LEGACY_UNSAFE_RATING).cast(pl.Int8)


def ensure_age_rating(items: pl.DataFrame) -> pl.DataFrame:
    """Give a frame written before age ratings its `age_rating` (the one documented fallback).

    - no `age_rating` column: 0 where `minor_safe` is true, 18 where it is false or null;
    - an `age_rating` column with nulls: those rows are filled the same way;
    - `age_rating` but no `minor_safe`: minor_safe = age_rating <= MINOR_SAFE_MAX_RATING;
    - neither column: the frame is returned unchanged (validation then names what is missing).
    """
    has_rating, has_safe = "age_rating" in items.columns, "minor_safe" in items.columns
    if not has_rating and has_safe:
        return items.with_columns(age_rating=rating_from_minor_safe(pl.col("minor_safe")))
    if has_rating and has_safe and items.get_column("age_rating").null_count():
        fallback = rating_from_minor_safe(pl.col("minor_safe"))
        return items.with_columns(age_rating=pl.coalesce(pl.col("age_rating"), fallback))
    if has_rating and not has_safe:
        return items.with_columns(minor_safe=minor_safe_from_rating(pl.col("age_rating")))
    return items


def _rating(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in AGE_RATINGS:
        raise SchemaError(f"{where}: age rating {value!r} is not one of {', '.join(map(str, AGE_RATINGS))}")
    return value


def _normalised_title(title: pl.Expr) -> pl.Expr:
    return title.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


def load_overrides(path: Path) -> pl.DataFrame:
    """Read and check the reviewed override CSV (item_id,title,age_rating,reason)."""
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except FileNotFoundError:
        raise SchemaError(f"{path}: age-rating override file not found") from None
    except Exception as exc:
        raise SchemaError(f"{path}: not a readable CSV ({type(exc).__name__})") from None
    missing = [c for c in OVERRIDE_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}")
    for name in OVERRIDE_COLUMNS:
        empty = frame.filter(pl.col(name).is_null() | (pl.col(name).str.strip_chars() == ""))
        if empty.height:
            raise SchemaError(f"{path}: column {name!r} is empty on {empty.height} row(s), e.g. {empty.row(0)}")
    duplicated = frame.filter(pl.col("item_id").is_duplicated())
    if duplicated.height:
        raise SchemaError(f"{path}: item_id {duplicated['item_id'][0]!r} is listed more than once")
    ratings = frame.get_column("age_rating").cast(pl.Int64, strict=False)
    bad = frame.filter(ratings.is_null() | ~ratings.is_in(AGE_RATINGS))
    if bad.height:
        raise SchemaError(
            f"{path}: age_rating {bad['age_rating'][0]!r} (item {bad['item_id'][0]}) "
            f"is not one of {', '.join(map(str, AGE_RATINGS))}"
        )
    return frame.select(
        pl.col("item_id").str.strip_chars(),
        pl.col("title"),
        pl.col("age_rating").cast(pl.Int8),
        pl.col("reason"),
    )


def _resolve(path_text: str, rules_path: Path) -> Path:
    # Paths in a rule file are relative to data/ (the parent of data/labels/).
    path = Path(path_text)
    return path if path.is_absolute() else rules_path.parent.parent / path


def _age_rules(rules: dict[str, Any], rules_path: Path) -> dict[str, Any]:
    """The checked [age_rating] table: genres, caps, compiled title rules, overrides frame."""
    table = rules.get("age_rating", {})
    where = f"{rules_path} [age_rating]"
    unlisted = _rating(table.get("unlisted_genre", LEGACY_UNSAFE_RATING), f"{where} unlisted_genre")
    genres = {str(g): _rating(r, f"{where}.genres {g!r}") for g, r in table.get("genres", {}).items()}
    caps = {str(g): _rating(r, f"{where}.genre_caps {g!r}") for g, r in table.get("genre_caps", {}).items()}
    title_rules = []
    for number, rule in enumerate(table.get("title_rules", []), start=1):
        label = f"{where}.title_rules #{number}"
        for key in ("name", "pattern", "rating", "reason"):
            if key not in rule:
                raise SchemaError(f"{label}: missing key {key!r}")
        try:
            re.compile(rule["pattern"])
        except re.error as exc:
            raise SchemaError(f"{label} ({rule['name']}): pattern is not a regular expression ({exc})") from None
        title_rules.append({**rule, "rating": _rating(rule["rating"], label)})
    overrides_csv = table.get("overrides_csv")
    overrides = load_overrides(_resolve(overrides_csv, rules_path)) if overrides_csv else None
    return {"unlisted": unlisted, "genres": genres, "caps": caps, "title_rules": title_rules, "overrides": overrides}


def rate_items(items: pl.DataFrame, rules_path: Path) -> pl.DataFrame:
    """The age-rating working of every item, for review and for `apply_label_rules`.

    Columns: item_id, title, genre_rating, title_rating, title_rules (names of matching rules),
    cap, rule_rating (after the cap), override_rating, override_reason, age_rating and `decided_by`
    ('override', 'cap', 'genre', 'title' or 'genre+title': which step set the rating).
    """
    rules = load_rules(rules_path)
    if "age_rating" not in rules:
        raise SchemaError(f"{rules_path}: no [age_rating] table")
    age = _age_rules(rules, rules_path)
    frame = items.select(
        "item_id",
        title=pl.col("title") if "title" in items.columns else pl.lit(None, dtype=pl.Utf8),
        categories=pl.col("categories"),
    )
    genre_rating = (
        pl.col("categories")
        .list.eval(pl.element().replace_strict(age["genres"], default=age["unlisted"], return_dtype=pl.Int8))
        .list.max()
        .fill_null(age["unlisted"])
        .cast(pl.Int8)
    )
    if age["caps"]:
        cap = pl.col("categories").list.eval(
            pl.element().replace_strict(age["caps"], default=pl.lit(None, dtype=pl.Int8), return_dtype=pl.Int8)
        ).list.min()
    else:
        cap = pl.lit(None, dtype=pl.Int8)
    rule_hits = [
        (pl.col("title").str.contains(f"(?i){rule['pattern']}").fill_null(False), rule) for rule in age["title_rules"]
    ]
    if rule_hits:
        title_rating = pl.max_horizontal([pl.when(hit).then(pl.lit(rule["rating"], pl.Int8)) for hit, rule in rule_hits])
        title_names = pl.concat_list([pl.when(hit).then(pl.lit(rule["name"])) for hit, rule in rule_hits]).list.drop_nulls()
    else:
        title_rating, title_names = pl.lit(None, dtype=pl.Int8), pl.lit([], dtype=pl.List(pl.Utf8))
    frame = frame.with_columns(
        genre_rating=genre_rating,
        title_rating=title_rating.cast(pl.Int8),
        title_rules=title_names,
        cap=cap.cast(pl.Int8),
    ).with_columns(
        uncapped=pl.max_horizontal("genre_rating", "title_rating"),
    ).with_columns(
        rule_rating=pl.min_horizontal("uncapped", "cap").cast(pl.Int8),
    )
    overrides = age["overrides"]
    if overrides is None or "title" not in items.columns:
        frame = frame.with_columns(
            override_rating=pl.lit(None, dtype=pl.Int8), override_reason=pl.lit(None, dtype=pl.Utf8)
        )
    else:
        joined = frame.join(
            overrides.rename({"title": "override_title", "age_rating": "override_rating", "reason": "override_reason"}),
            on="item_id",
            how="left",
        )
        title_ok = _normalised_title(pl.col("title")) == _normalised_title(pl.col("override_title"))
        frame = joined.with_columns(
            override_rating=pl.when(title_ok).then(pl.col("override_rating")),
            override_reason=pl.when(title_ok).then(pl.col("override_reason")),
        ).drop("override_title")
    decided_by = (
        pl.when(pl.col("override_rating").is_not_null()).then(pl.lit("override"))
        .when(pl.col("cap").is_not_null() & (pl.col("cap") < pl.col("uncapped"))).then(pl.lit("cap"))
        .when(pl.col("title_rating").is_null() | (pl.col("genre_rating") > pl.col("title_rating")))
        .then(pl.lit("genre"))
        .when(pl.col("genre_rating") < pl.col("title_rating")).then(pl.lit("title"))
        .otherwise(pl.lit("genre+title"))
    )
    return frame.with_columns(
        age_rating=pl.coalesce("override_rating", "rule_rating").cast(pl.Int8), decided_by=decided_by
    ).select(
        "item_id", "title", "genre_rating", "title_rating", "title_rules", "cap", "rule_rating",
        "override_rating", "override_reason", "age_rating", "decided_by",
    )


def override_mismatches(items: pl.DataFrame, rules_path: Path) -> pl.DataFrame:
    """Override rows whose item_id names an item with another title (these rows are not applied)."""
    overrides: pl.DataFrame | None = _age_rules(load_rules(rules_path), rules_path)["overrides"]
    if overrides is None:
        return pl.DataFrame(schema={"item_id": pl.Utf8, "title": pl.Utf8, "item_title": pl.Utf8})
    joined = overrides.join(items.select("item_id", item_title=pl.col("title")), on="item_id", how="inner")
    return joined.filter(_normalised_title(pl.col("title")) != _normalised_title(pl.col("item_title"))).select(
        "item_id", "title", "item_title"
    )


# -- all labels ----------------------------------------------------------------------------------
def apply_label_rules(items: pl.DataFrame, rules_path: Path) -> pl.DataFrame:
    """Return `items` with `age_rating` and the boolean label columns set by the rules in `rules_path`.

    With an [age_rating] table, age_rating comes from `rate_items` and minor_safe is derived from it.
    A rule file of the older form (a [minor_safe] table of unsafe/safe categories and no
    [age_rating]) still works: minor_safe from the categories, age_rating from `ensure_age_rating`.
    """
    rules = load_rules(rules_path)
    if "age_rating" in rules:
        rated = rate_items(items, rules_path).select("item_id", "age_rating")
        items = items.drop("age_rating", strict=False).join(rated, on="item_id", how="left", maintain_order="left")
        items = items.with_columns(minor_safe=minor_safe_from_rating(pl.col("age_rating")))
    else:
        minor = rules.get("minor_safe", {})
        unsafe = list(minor.get("unsafe_categories", []))
        safe = list(minor.get("safe_categories", []))
        minor_safe = ~pl.col("categories").list.eval(pl.element().is_in(unsafe)).list.any()
        if safe:
            minor_safe = minor_safe | pl.col("categories").list.eval(pl.element().is_in(safe)).list.any()
        items = ensure_age_rating(items.drop("age_rating", strict=False).with_columns(minor_safe=minor_safe))

    pool_ids: list[str] = []
    pool_csv = rules.get("mainstream", {}).get("pool_csv")
    if pool_csv:
        pool_path = _resolve(pool_csv, rules_path)
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
        mainstream=pl.col("item_id").is_in(pool_ids),
        synthetic=pl.col("item_id").is_in(synthetic_ids),
        flagged=pl.col("item_id").is_in(flagged_ids),
    )


# -- report --------------------------------------------------------------------------------------
def age_band_report(items: pl.DataFrame) -> dict[str, int]:
    """How many servable items each viewer band admits: {'under-8': n, '8-12': n, ..., 'adults': n}.

    A band admits the items rated at or below its rating; flagged items (never served) are not
    counted. Frames without `age_rating` are read through `ensure_age_rating`.
    """
    items = ensure_age_rating(items)
    if "age_rating" not in items.columns:
        raise SchemaError("items: no 'age_rating' and no 'minor_safe' column to derive it from")
    if "flagged" in items.columns:
        items = items.filter(~pl.col("flagged").fill_null(False))
    ratings = items.get_column("age_rating")
    return {name: int((ratings <= rating).sum()) for name, _, rating in VIEWER_BANDS}


def format_age_band_report(report: dict[str, int]) -> str:
    """One line for CLI output, e.g. 'items admitted per age band: under-8 164, 8-12 201, ...'."""
    return "items admitted per age band: " + ", ".join(f"{band} {count:,}" for band, count in report.items())
