"""The dataset schema: three polars frames every source is read into, and their validation.

Every dataset module returns a `Dataset`; every consumer (training, serving, benchmarks) reads only
these columns. Validation names the file and the column, so a bad input never surfaces as a stack
trace from deep inside polars or numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

FrameReader = Callable[[Path], pl.DataFrame]
"""Reads one of a dataset's Parquet files into a frame (default: `polars.read_parquet`)."""

INTERACTIONS: dict[str, pl.DataType] = {
    "user_id": pl.Utf8(),
    "item_id": pl.Utf8(),
    "timestamp": pl.Int64(),  # unix seconds
    "rating": pl.Float32(),  # explicit rating, or an implicit weight (1.0 for a click)
}

ITEMS: dict[str, pl.DataType] = {
    "item_id": pl.Utf8(),
    "title": pl.Utf8(),
    "categories": pl.List(pl.Utf8()),  # first entry is the primary category
    "release_year": pl.Int32(),  # may be null
    "content_key": pl.Utf8(),  # same key = same content (normalised title or content hash)
    # labels: set by the dataset's documented label rules (data/labels/) or by the provider
    "minor_safe": pl.Boolean(),  # derived: age_rating <= 0, safe for every minor (recsys/datasets/labels.py)
    # youngest viewer band allowed (2024 minors-mode guideline): one of AGE_RATINGS. A frame
    # without it still validates: validate() fills it from minor_safe via labels.ensure_age_rating.
    "age_rating": pl.Int8(),
    "mainstream": pl.Boolean(),
    "synthetic": pl.Boolean(),  # algorithm-generated content, must be labelled when served
    "flagged": pl.Boolean(),  # illegal or harmful: never served
}

USERS: dict[str, pl.DataType] = {
    "user_id": pl.Utf8(),
    "age": pl.Int32(),  # may be null; < 18 means minor
}

LABELS = ("minor_safe", "mainstream", "synthetic", "flagged")  # the boolean labels
AGE_RATINGS = (0, 8, 12, 16, 18)  # all ages, 8+, 12+, 16+, adults only

FRAME_FILES = {"interactions": "interactions.parquet", "items": "items.parquet", "users": "users.parquet"}


class SchemaError(ValueError):
    """A frame does not match the schema; the message names the source and the column."""


def validate(frame: pl.DataFrame, schema: dict[str, pl.DataType], source: str) -> pl.DataFrame:
    """Return `frame` with the schema's columns first, cast to their types; extra columns are kept.

    Raises SchemaError naming `source` and the column when a column is missing, cannot be cast,
    or (for id columns) holds nulls. An items frame written before age ratings (no `age_rating`
    column) is first given one by `recsys.datasets.labels.ensure_age_rating` (0 where minor_safe,
    else 18); `age_rating` must then hold only AGE_RATINGS.
    """
    if "age_rating" in schema and ("age_rating" not in frame.columns or "minor_safe" not in frame.columns):
        from recsys.datasets.labels import ensure_age_rating  # here: labels imports this module

        frame = ensure_age_rating(frame)
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"expected columns: {', '.join(schema)}"
        )
    cast = []
    for name, dtype in schema.items():
        column = frame.get_column(name)
        if column.dtype == dtype:
            cast.append(column)
            continue
        try:
            cast.append(column.cast(dtype, strict=True))
        except Exception as exc:  # polars raises several types; the message is what matters
            raise SchemaError(
                f"{source}: column {name!r} has type {column.dtype}, cannot read it as {dtype} "
                f"({type(exc).__name__})"
            ) from None
    out = frame.with_columns(cast).select([*schema, *[c for c in frame.columns if c not in schema]])
    for name in schema:
        if name.endswith("_id") and out.get_column(name).null_count():
            raise SchemaError(f"{source}: column {name!r} has null values")
    if "age_rating" in schema:
        ratings = out.get_column("age_rating")
        if ratings.null_count():
            raise SchemaError(f"{source}: column 'age_rating' has null values")
        bad = ratings.filter(~ratings.is_in(AGE_RATINGS))
        if bad.len():
            raise SchemaError(
                f"{source}: column 'age_rating' has value {bad[0]}, expected one of {', '.join(map(str, AGE_RATINGS))}"
            )
    return out


@dataclass(frozen=True)
class Dataset:
    """Interactions, items and users of one source, validated against the schema."""

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame

    @classmethod
    def from_frames(
        cls, name: str, interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame
    ) -> Dataset:
        interactions = validate(interactions, INTERACTIONS, f"{name}/interactions")
        items = validate(items, ITEMS, f"{name}/items")
        users = validate(users, USERS, f"{name}/users")
        if items.get_column("item_id").is_duplicated().any():
            raise SchemaError(f"{name}/items: column 'item_id' has duplicate values")
        unknown = interactions.join(items, on="item_id", how="anti").height
        if unknown:
            raise SchemaError(f"{name}/interactions: {unknown} rows name an item_id absent from items")
        return cls(name, interactions, items, users)

    def save(self, directory: Path) -> Path:
        """Write the three frames as Parquet (atomically per file) into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        for attr, filename in FRAME_FILES.items():
            tmp = directory / f".{filename}.tmp"
            getattr(self, attr).write_parquet(tmp)
            tmp.replace(directory / filename)
        return directory

    @classmethod
    def load(cls, directory: Path, name: str | None = None, readers: Mapping[str, FrameReader] | None = None) -> Dataset:
        """Read a dataset directory written by `save` (or by hand, following the schema); `readers`
        replaces the reader of named frames (e.g. {"interactions": ...} read by Ray Data)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise SchemaError(f"{directory}: no such dataset directory")
        frames = {}
        for attr, filename in FRAME_FILES.items():
            path = directory / filename
            if not path.exists():
                raise SchemaError(f"{path}: missing file (a dataset directory holds {', '.join(FRAME_FILES.values())})")
            try:
                frames[attr] = (readers or {}).get(attr, pl.read_parquet)(path)
            except Exception as exc:
                raise SchemaError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
        return cls.from_frames(name or directory.name, **frames)

    def summary(self) -> str:
        return (
            f"{self.name}: {self.interactions.height:,} interactions, "
            f"{self.items.height:,} items, {self.users.height:,} users"
        )
