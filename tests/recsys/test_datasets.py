"""Schema validation, the MovieLens parsers (both layouts) and the synthetic generator."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.datasets import labels, movielens
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.schema import INTERACTIONS, Dataset, SchemaError, validate

RULES = Path(__file__).resolve().parents[2] / "data" / "labels" / "movielens-100k.toml"


def test_validate_names_source_and_missing_column():
    frame = pl.DataFrame({"user_id": ["1"], "item_id": ["2"], "rating": [4.0]})
    with pytest.raises(SchemaError, match=r"ratings\.csv: missing column\(s\) 'timestamp'"):
        validate(frame, INTERACTIONS, "ratings.csv")


def test_validate_names_column_that_cannot_be_cast():
    frame = pl.DataFrame({"user_id": ["1"], "item_id": ["2"], "timestamp": ["yesterday"], "rating": [4.0]})
    with pytest.raises(SchemaError, match=r"x: column 'timestamp' has type String"):
        validate(frame, INTERACTIONS, "x")


def test_validate_rejects_null_ids():
    frame = pl.DataFrame({"user_id": [None, "1"], "item_id": ["2", "3"], "timestamp": [1, 2], "rating": [4.0, 5.0]})
    with pytest.raises(SchemaError, match="'user_id' has null values"):
        validate(frame, INTERACTIONS, "x")


def test_load_missing_directory_and_file(tmp_path):
    with pytest.raises(SchemaError, match="no such dataset directory"):
        Dataset.load(tmp_path / "nope")
    with pytest.raises(SchemaError, match="interactions.parquet: missing file"):
        Dataset.load(tmp_path)


def test_interactions_must_name_known_items():
    data = generate(SyntheticConfig(n_users=5, n_items=30, seed=1))
    bad = pl.concat([data.interactions, pl.DataFrame({"user_id": ["u0"], "item_id": ["nope"], "timestamp": [1], "rating": [3.0]}, schema=INTERACTIONS)])
    with pytest.raises(SchemaError, match="absent from items"):
        Dataset.from_frames("x", bad, data.items, data.users)


def _write_recbole(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t881250949\n1\t11\t2\t881250950\n2\t12\t4\t881250951\n"
    )
    (folder / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tToy Story\t1995\tAnimation Children's Comedy\n11\tScream\t1996\tHorror Thriller\n12\tToy  Story\tV\tComedy\n"
    )
    (folder / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t15\tM\tstudent\t1\n2\t40\tF\tother\t2\n"
    )


CHILDREN = "Children's"


def _write_grouplens(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("1\t10\t5\t881250949\n1\t11\t2\t881250950\n2\t12\t4\t881250951\n")
    flags = ["0"] * len(movielens.GENRES)

    def genres(*names):
        row = list(flags)
        for name in names:
            row[movielens.GENRES.index(name)] = "1"
        return "|".join(row)

    (folder / "u.item").write_text(
        f"10|Toy Story (1995)|01-Jan-1995||url|{genres('Animation', CHILDREN, 'Comedy')}\n"
        f"11|Scream (1996)|01-Jan-1996||url|{genres('Horror', 'Thriller')}\n"
        f"12|Toy Story (1995)|01-Jan-1995||url|{genres('Comedy')}\n"
    )
    (folder / "u.user").write_text("1|15|M|student|1\n2|40|F|other|2\n")


@pytest.mark.parametrize("writer", [_write_recbole, _write_grouplens])
def test_movielens_layouts_parse_to_the_same_schema(tmp_path, writer):
    writer(tmp_path / "raw")
    data = movielens.build(tmp_path / "raw", RULES)
    assert data.interactions.height == 3 and data.items.height == 3 and data.users.height == 2
    items = {row["item_id"]: row for row in data.items.iter_rows(named=True)}
    assert items["10"]["minor_safe"]  # Children's keeps it safe although no unsafe genre anyway
    assert not items["11"]["minor_safe"]  # Horror/Thriller
    assert items["10"]["categories"][0] == "Animation"
    assert data.users.filter(pl.col("user_id") == "1")["age"][0] == 15


def test_movielens_rejects_a_bad_folder(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(SchemaError, match="not a MovieLens-100K folder"):
        movielens.fetch_raw(tmp_path / "raw", source=str(tmp_path / "x"))


def test_content_key_joins_same_title_and_year():
    frame = pl.DataFrame({"t": ["Chasing Amy", "chasing  amy!", "Chasing Amy"], "y": [1997, 1997, 1998]})
    keys = frame.select(movielens.content_key(pl.col("t"), pl.col("y"))).to_series().to_list()
    assert keys[0] == keys[1] != keys[2]


def test_label_rules_mainstream_pool_from_csv():
    items = pl.DataFrame({"item_id": ["1", "2"], "categories": [["Comedy"], ["War", "Children's"]]})
    labelled = labels.apply_label_rules(items, RULES)
    assert labelled["mainstream"].to_list() == [True, False]  # Toy Story (id 1) is in the editorial CSV
    # Comedy is rated 12 (not safe for every minor); the Children's cap keeps War + Children's at 0
    assert labelled["age_rating"].to_list() == [12, 0]
    assert labelled["minor_safe"].to_list() == [False, True]


@settings(max_examples=15, deadline=None)
@given(n_users=st.integers(1, 60), n_items=st.integers(24, 400), seed=st.integers(0, 10_000))
def test_synthetic_generator_is_valid_seeded_and_skewed(n_users, n_items, seed):
    config = SyntheticConfig(n_users=n_users, n_items=n_items, seed=seed)
    first, second = generate(config), generate(config)
    assert first.interactions.equals(second.interactions) and first.items.equals(second.items)
    assert first.items.height == n_items and first.users.height == n_users
    assert first.interactions.select("user_id", "item_id").is_unique().all()
    # every item's primary category is one of the configured categories
    primaries = first.items["categories"].list.first().unique().to_list()
    assert set(primaries) <= {f"cat{c:02d}" for c in range(config.n_categories)}
    # duplicates point at an existing item's content
    assert first.items["content_key"].str.slice(1).cast(pl.Int64).max() < n_items


def test_synthetic_has_every_label_and_minors_at_scale():
    data = generate(SyntheticConfig(n_users=2_000, n_items=20_000, seed=3))
    shares = data.items.select(pl.col(c).mean() for c in ("minor_safe", "mainstream", "synthetic", "flagged")).row(0)
    assert all(0 < share < 1 for share in shares)
    assert data.items["content_key"].is_duplicated().any()
    assert 0.05 < (data.users["age"] < 18).mean() < 0.2
    counts = data.interactions.group_by("item_id").len()["len"].to_numpy()
    assert np.quantile(counts, 0.99) > 5 * np.median(counts)  # popularity skew
