"""MovieLens-100K: fetched, parsed into the schema's frames, labelled, cached as Parquet.

Three sources, tried in this order unless one is named:
- `recbole`: the copy inside the RecBole 1.2.1 wheel, fetched with pip from the package index
  (the only copy reachable on machines without general internet access);
- `grouplens`: the original zip from GroupLens, for machines with internet access;
- a local path: a folder holding either RecBole's atomic files (ml-100k.inter/.item/.user) or
  GroupLens' files (u.data, u.item, u.user).
The MovieLens licence forbids redistribution: the files live only under data/raw (git-ignored).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import polars as pl

from recsys.datasets.labels import apply_label_rules
from recsys.schema import Dataset, SchemaError

NAME = "movielens-100k"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def fetch_raw(raw_dir: Path, source: str = "recbole") -> Path:
    """Place the raw MovieLens-100K files under raw_dir/movielens-100k and return that folder."""
    target = raw_dir / NAME
    if _has_raw_files(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    if source == "recbole":
        _fetch_from_recbole_wheel(target)
    elif source == "grouplens":
        _fetch_from_grouplens(target)
    else:
        local = Path(source)
        if not _has_raw_files(local):
            raise SchemaError(
                f"{local}: not a MovieLens-100K folder (expected ml-100k.inter/.item/.user or u.data/u.item/u.user)"
            )
        for path in local.iterdir():
            if path.name in {"ml-100k.inter", "ml-100k.item", "ml-100k.user", "u.data", "u.item", "u.user"}:
                shutil.copyfile(path, target / path.name)
    return target


def _has_raw_files(folder: Path) -> bool:
    recbole = all((folder / f"ml-100k.{ext}").exists() for ext in ("inter", "item", "user"))
    grouplens = all((folder / name).exists() for name in ("u.data", "u.item", "u.user"))
    return recbole or grouplens


def _fetch_from_recbole_wheel(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", RECBOLE_REQUIREMENT, "--no-deps", "-q", "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if result.returncode != 0 or not wheels:
            raise SchemaError(
                f"could not download {RECBOLE_REQUIREMENT} with pip ({result.stderr.strip()[-300:]}); "
                "use --source grouplens or --source PATH"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for ext in ("inter", "item", "user"):
                with wheel.open(RECBOLE_MEMBER.format(ext)) as src, open(target / f"ml-100k.{ext}", "wb") as dst:
                    shutil.copyfileobj(src, dst)


def _fetch_from_grouplens(target: Path) -> None:
    with urllib.request.urlopen(GROUPLENS_URL, timeout=60) as response:
        payload = response.read()
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for name in ("u.data", "u.item", "u.user"):
            with archive.open(f"ml-100k/{name}") as src, open(target / name, "wb") as dst:
                shutil.copyfileobj(src, dst)


def content_key(title: pl.Expr, year: pl.Expr) -> pl.Expr:
    """Same normalised title and year = same film (ML-100K lists some films under two ids)."""
    normalised = title.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", " ").str.strip_chars()
    return pl.concat_str([normalised, year.cast(pl.Utf8).fill_null("")], separator="|")


def parse(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read raw files (RecBole or GroupLens layout) into unlabelled schema frames."""
    if (folder / "ml-100k.inter").exists():
        return _parse_recbole(folder)
    return _parse_grouplens(folder)


def _read_tsv(path: Path, **kwargs: Any) -> pl.DataFrame:
    try:
        return pl.read_csv(path, separator="\t", quote_char=None, infer_schema=False, **kwargs)
    except Exception as exc:
        raise SchemaError(f"{path}: cannot parse as tab-separated text ({type(exc).__name__})") from None


def _require(frame: pl.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}")


def _parse_recbole(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    inter_path, item_path, user_path = (folder / f"ml-100k.{ext}" for ext in ("inter", "item", "user"))
    inter = _read_tsv(inter_path)
    _require(inter, ["user_id:token", "item_id:token", "rating:float", "timestamp:float"], inter_path)
    interactions = inter.select(
        user_id=pl.col("user_id:token"),
        item_id=pl.col("item_id:token"),
        timestamp=pl.col("timestamp:float").cast(pl.Float64).cast(pl.Int64),
        rating=pl.col("rating:float").cast(pl.Float32),
    )
    item = _read_tsv(item_path)
    _require(item, ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"], item_path)
    items = item.select(
        item_id=pl.col("item_id:token"),
        title=pl.col("movie_title:token_seq"),
        categories=pl.col("class:token_seq").str.split(" "),
        release_year=pl.col("release_year:token").cast(pl.Int32, strict=False),
    )
    user = _read_tsv(user_path)
    _require(user, ["user_id:token", "age:token"], user_path)
    users = user.select(
        user_id=pl.col("user_id:token"),
        age=pl.col("age:token").cast(pl.Int32),
        gender=pl.col("gender:token"),
        occupation=pl.col("occupation:token"),
    )
    return interactions, items, users


def _parse_grouplens(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    data_path = folder / "u.data"
    inter = _read_tsv(data_path, has_header=False, new_columns=["user_id", "item_id", "rating", "timestamp"])
    interactions = inter.select(
        "user_id",
        "item_id",
        pl.col("timestamp").cast(pl.Int64),
        pl.col("rating").cast(pl.Float32),
    )
    item_path = folder / "u.item"
    text = item_path.read_bytes().decode("latin-1")
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    if any(len(row) != 5 + len(GENRES) for row in rows):
        raise SchemaError(f"{item_path}: expected {5 + len(GENRES)} '|'-separated fields per line")
    titles, years, categories = [], [], []
    for row in rows:
        match = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", row[1])
        titles.append(match.group(1) if match else row[1])
        years.append(int(match.group(2)) if match else None)
        categories.append([g for g, flag in zip(GENRES, row[5:]) if flag == "1"] or ["unknown"])
    items = pl.DataFrame(
        {"item_id": [r[0] for r in rows], "title": titles, "categories": categories, "release_year": years},
        schema_overrides={"release_year": pl.Int32},
    )
    user_path = folder / "u.user"
    user = pl.read_csv(
        user_path, separator="|", has_header=False, infer_schema=False,
        new_columns=["user_id", "age", "gender", "occupation", "zip_code"],
    )
    users = user.select("user_id", pl.col("age").cast(pl.Int32), "gender", "occupation")
    return interactions, items, users


def build(raw_folder: Path, rules_path: Path) -> Dataset:
    """Parse raw files, derive content keys and labels, validate against the schema."""
    interactions, items, users = parse(raw_folder)
    items = items.with_columns(content_key=content_key(pl.col("title"), pl.col("release_year")))
    items = apply_label_rules(items, rules_path)
    return Dataset.from_frames(NAME, interactions, items, users)
