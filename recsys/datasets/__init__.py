"""Dataset sources. Each returns a `recsys.schema.Dataset`; `load` resolves a name or a folder.

Adding a dataset: one module here with a function that returns the schema's frames, and one
entry in `load` (or simply write the three Parquet files of the schema into a folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from recsys.config import core_settings
from recsys.datasets import movielens
from recsys.schema import Dataset, FrameReader, SchemaError

KNOWN = (movielens.NAME,)


def fetch(name: str, source: str = "recbole", force: bool = False) -> Path:
    """Fetch and cache a named dataset as Parquet under data/processed/NAME; return that folder."""
    settings = core_settings()
    if name != movielens.NAME:
        raise SchemaError(f"unknown dataset {name!r}; known: {', '.join(KNOWN)}")
    out = settings.processed_dir / name
    if not force and all((out / f).exists() for f in ("interactions.parquet", "items.parquet", "users.parquet")):
        return out
    raw = movielens.fetch_raw(settings.raw_dir, source)
    dataset = movielens.build(raw, settings.data_dir / "labels" / f"{name}.toml")
    return dataset.save(out)


def load(name_or_path: str | Path, readers: Mapping[str, FrameReader] | None = None) -> Dataset:
    """Load a known dataset by name (fetching it if needed) or a dataset folder by path; `readers`
    replaces the Parquet reader of named frames (`Dataset.load`)."""
    if str(name_or_path) in KNOWN:
        return Dataset.load(fetch(str(name_or_path)), name=str(name_or_path), readers=readers)
    path = Path(name_or_path)
    if not path.exists():
        raise SchemaError(f"{path}: neither a known dataset ({', '.join(KNOWN)}) nor an existing folder")
    return Dataset.load(path, readers=readers)
