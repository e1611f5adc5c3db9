"""Age ratings: rule precedence, the reviewed MovieLens overrides, old frames, synthetic data, report."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsys.datasets import labels
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.schema import AGE_RATINGS, ITEMS, Dataset, SchemaError, validate

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "data" / "labels" / "movielens-100k.toml"
PROCESSED_ITEMS = ROOT / "data" / "processed" / "movielens-100k" / "items.parquet"
CHILDREN = "Children's"

# Films the review must rate 16 or 18 (US R/NC-17 or UK 18), as titled in MovieLens-100K.
ADULT_TITLES = [
    ("Showgirls", 1995), ("Trainspotting", 1996), ("Clockwork Orange, A", 1971), ("Pulp Fiction", 1994),
    ("Reservoir Dogs", 1992), ("Natural Born Killers", 1994), ("Basic Instinct", 1992), ("Kids", 1995),
    ("Crash", 1996), ("Seven (Se7en)", 1995), ("Silence of the Lambs, The", 1991), ("Fargo", 1996),
    ("GoodFellas", 1990), ("Casino", 1995), ("Taxi Driver", 1976), ("Platoon", 1986),
    ("Full Metal Jacket", 1987), ("Boogie Nights", 1997), ("Leaving Las Vegas", 1995),
    ("People vs. Larry Flynt, The", 1996), ("Striptease", 1996), ("Exotica", 1994), ("Belle de jour", 1967),
    ("Sex, Lies, and Videotape", 1989), ("Godfather, The", 1972), ("Scream", 1996), ("Shining, The", 1980),
]


def write_rules(tmp_path: Path, overrides: str, extra: str = "") -> Path:
    """A small rule file with the structure of the MovieLens one (data/labels/ under tmp_path)."""
    label_dir = tmp_path / "labels"
    label_dir.mkdir(parents=True, exist_ok=True)
    (label_dir / "overrides.csv").write_text(textwrap.dedent(overrides).lstrip())
    rules = label_dir / "rules.toml"
    rules.write_text(textwrap.dedent(f"""
        [age_rating]
        unlisted_genre = 18
        overrides_csv = "labels/overrides.csv"
        [age_rating.genres]
        "Children's" = 0
        Comedy = 8
        Drama = 12
        Thriller = 16
        Horror = 18
        [age_rating.genre_caps]
        "Children's" = 0
        [[age_rating.title_rules]]
        name = "killing"
        pattern = '\\b(kill|killer)\\b'
        rating = 16
        reason = "violence"
        [[age_rating.title_rules]]
        name = "sex"
        pattern = '\\bsex\\b'
        rating = 18
        reason = "sexual content"
        {extra}
    """))
    return rules


OVERRIDES = """
    item_id,title,age_rating,reason
    o1,Gentle Horror,12,reviewed: a ghost comedy for teenagers
    o2,Quiet Comedy,18,reviewed: explicit sexual content
    o3,Somebody Else,0,written for another numbering of the items
    o4,Kid Killer Cartoon,8,reviewed: cartoon violence
"""


def frame(rows: list[tuple[str, str, list[str]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"item_id": [r[0] for r in rows], "title": [r[1] for r in rows], "categories": [r[2] for r in rows]},
        schema={"item_id": pl.Utf8, "title": pl.Utf8, "categories": pl.List(pl.Utf8)},
    )


def ratings(items: pl.DataFrame, rules: Path) -> dict[str, int]:
    rated = labels.rate_items(items, rules)
    return dict(zip(rated["item_id"].to_list(), rated["age_rating"].to_list()))


# -- precedence ----------------------------------------------------------------------------------
def test_rules_take_the_maximum_of_genre_and_title_rules(tmp_path):
    rules = write_rules(tmp_path, OVERRIDES)
    items = frame([
        ("a", "A Drama", ["Drama"]),                      # genre only: 12
        ("b", "Comedy Killer", ["Comedy"]),               # title 16 > genre 8
        ("c", "The Killer", ["Horror"]),                  # genre 18 > title 16
        ("d", "Sex and the Killer", ["Comedy", "Drama"]), # two title rules and two genres: 18
        ("e", "Drama Thriller", ["Drama", "Thriller"]),   # highest genre: 16
        ("f", "Unknown Genre", ["Musical"]),              # not in the table: unlisted_genre
        ("g", "No Genre", []),                            # no genre at all: unlisted_genre
        ("h", "killer-whale", ["Comedy"]),                # \\b matches at punctuation, case-insensitive
        ("i", "Skill Games", ["Comedy"]),                 # ...but not inside a word
    ])
    assert ratings(items, rules) == {"a": 12, "b": 16, "c": 18, "d": 18, "e": 16, "f": 18, "g": 18, "h": 16, "i": 8}
    rated = labels.rate_items(items, rules)
    decided = dict(zip(rated["item_id"], rated["decided_by"]))
    assert decided["a"] == "genre" and decided["b"] == "title" and decided["c"] == "genre"
    assert rated.filter(pl.col("item_id") == "d")["title_rules"].to_list() == [["killing", "sex"]]


def test_override_beats_rules_in_both_directions_only_when_the_title_matches(tmp_path):
    rules = write_rules(tmp_path, OVERRIDES)
    items = frame([
        ("o1", "Gentle  Horror!", ["Horror"]),   # rules 18, override 12 (title compared loosely)
        ("o2", "Quiet Comedy", ["Comedy"]),      # rules 8, override 18
        ("o3", "Sex Comedy", ["Comedy"]),        # override row names another title: not applied
        ("x", "Plain Comedy", ["Comedy"]),       # no override row
    ])
    rated = labels.rate_items(items, rules)
    assert ratings(items, rules) == {"o1": 12, "o2": 18, "o3": 18, "x": 8}
    assert dict(zip(rated["item_id"], rated["decided_by"]))["o1"] == "override"
    assert rated.filter(pl.col("item_id") == "o2")["override_reason"][0].startswith("reviewed")
    mismatched = labels.override_mismatches(items, rules)
    assert mismatched["item_id"].to_list() == ["o3"] and mismatched["item_title"].to_list() == ["Sex Comedy"]


def test_childrens_cap_keeps_0_over_genres_and_titles_unless_overridden(tmp_path):
    rules = write_rules(tmp_path, OVERRIDES)
    items = frame([
        ("k1", "Killer Robots", [CHILDREN, "Thriller", "Horror"]),  # rules 18, capped to 0
        ("k2", "Toy Town", [CHILDREN, "Comedy"]),
        ("o4", "Kid Killer Cartoon", [CHILDREN]),                   # override raises the cap to 8
    ])
    assert ratings(items, rules) == {"k1": 0, "k2": 0, "o4": 8}
    decided = dict(zip(*labels.rate_items(items, rules).select("item_id", "decided_by")))
    assert decided["k1"] == "cap" and decided["o4"] == "override"


def test_frame_without_titles_gets_genre_rules_and_no_overrides(tmp_path):
    rules = write_rules(tmp_path, OVERRIDES)
    items = pl.DataFrame({"item_id": ["o2", "z"], "categories": [["Comedy"], ["Thriller"]]})
    assert ratings(items, rules) == {"o2": 8, "z": 16}


def test_apply_label_rules_derives_minor_safe_from_the_rating(tmp_path):
    rules = write_rules(tmp_path, OVERRIDES)
    items = frame([("a", "Toy Town", [CHILDREN]), ("b", "Funny", ["Comedy"]), ("c", "Scary", ["Horror"])])
    labelled = labels.apply_label_rules(items, rules)
    assert labelled["age_rating"].dtype == pl.Int8
    assert labelled["age_rating"].to_list() == [0, 8, 18]
    assert labelled["minor_safe"].to_list() == [True, False, False]  # minor_safe = age_rating == 0
    assert labelled["item_id"].to_list() == ["a", "b", "c"]  # order kept


EMPTY = "item_id,title,age_rating,reason\n"


@pytest.mark.parametrize(
    ("overrides", "extra", "message"),
    [
        ("item_id,title,age_rating,reason\n1,A,7,x\n", "", "age_rating '7'"),
        ("item_id,title,age_rating,reason\n1,A,8,x\n1,A,12,y\n", "", "listed more than once"),
        ("item_id,title,age_rating,reason\n1,A,8,\n", "", "'reason' is empty"),
        ("item_id,title,rating\n1,A,8\n", "", "missing column"),
        (EMPTY, "[[age_rating.title_rules]]\nname='x'\npattern='('\nrating=16\nreason='r'", "not a regular expression"),
        (EMPTY, "[[age_rating.title_rules]]\nname='x'\npattern='a'\nrating=15\nreason='r'", "age rating 15"),
    ],
)
def test_bad_rule_files_are_named(tmp_path, overrides, extra, message):
    rules = write_rules(tmp_path, overrides, extra)
    with pytest.raises(SchemaError, match=message):
        labels.rate_items(frame([("1", "A", ["Drama"])]), rules)


def test_older_rule_files_without_an_age_rating_table_still_work(tmp_path):
    rules = tmp_path / "labels" / "old.toml"
    rules.parent.mkdir()
    rules.write_text('[minor_safe]\nunsafe_categories = ["Horror"]\nsafe_categories = ["Children\'s"]\n')
    items = frame([("a", "A", ["Comedy"]), ("b", "B", ["Horror"]), ("c", "C", ["Horror", CHILDREN])])
    labelled = labels.apply_label_rules(items, rules)
    assert labelled["minor_safe"].to_list() == [True, False, True]
    assert labelled["age_rating"].to_list() == [0, 18, 0]


# -- the MovieLens rule set ----------------------------------------------------------------------
def test_movielens_rules_on_a_hand_made_frame():
    items = frame([
        ("375", "Showgirls", ["Drama"]),
        ("475", "Trainspotting", ["Drama"]),
        ("179", "Clockwork Orange, A", ["Sci-Fi"]),
        ("772", "Kids", ["Drama"]),
        ("693", "Casino", ["Drama"]),
        ("1", "Toy Story", ["Animation", CHILDREN, "Comedy"]),
        ("8", "Babe", [CHILDREN, "Comedy", "Drama"]),
        ("21", "Muppet Treasure Island", ["Action", "Adventure", "Comedy", "Musical", "Thriller"]),
        ("999999", "Erotic Nights", ["Drama"]),   # not reviewed: the title rule raises it
        ("999998", "Murder Mystery", ["Comedy"]),
    ])
    got = ratings(items, RULES)
    assert all(got[i] == 18 for i in ("375", "475", "179", "772", "693"))
    assert got["1"] == got["8"] == 0
    assert got["21"] == 0  # a family film the Thriller genre over-rates, lowered by review
    assert got["999999"] == 18 and got["999998"] == 16


def test_movielens_rule_file_documents_every_rule_and_override():
    rules = labels.load_rules(RULES)
    table = rules["age_rating"]
    assert set(table["genres"].values()) <= set(AGE_RATINGS)
    assert all(rule["reason"].strip() and rule["name"].strip() for rule in table["title_rules"])
    overrides = labels.load_overrides(RULES.parent.parent / table["overrides_csv"])  # checks every row
    assert overrides.height >= 300
    assert overrides.filter(pl.col("age_rating") >= 16).height >= 300
    text = RULES.read_text()
    for step in ("OVERRIDE", "CAP", "RULES", "MAXIMUM", "minor_safe"):
        assert step in text  # the precedence is written down where the rules are
    for step in ("override", "cap", "maximum", "ensure_age_rating", "MINOR_SAFE_MAX_RATING"):
        assert step in labels.__doc__


@pytest.fixture(scope="module")
def movielens_items() -> pl.DataFrame:
    if not PROCESSED_ITEMS.exists():
        pytest.skip("MovieLens-100K not fetched (recsys data fetch movielens-100k)")
    items = pl.read_parquet(PROCESSED_ITEMS).drop("age_rating", "minor_safe", strict=False)
    return labels.apply_label_rules(items, RULES)  # the current rules, whenever the data was fetched


def test_real_movielens_adult_titles_are_rated_16_or_more(movielens_items):
    by_title = {(r["title"], r["release_year"]): r["age_rating"] for r in movielens_items.iter_rows(named=True)}
    missing = [t for t in ADULT_TITLES if t not in by_title]
    assert not missing, f"titles not in MovieLens-100K: {missing}"
    low = {t: by_title[t] for t in ADULT_TITLES if by_title[t] < 16}
    assert not low, f"adult films rated below 16: {low}"


def test_real_movielens_childrens_films_stay_0_unless_overridden(movielens_items):
    rated = labels.rate_items(movielens_items, RULES)
    children = rated.join(movielens_items.select("item_id", "categories"), on="item_id").filter(
        pl.col("categories").list.contains(CHILDREN)
    )
    assert children.height > 100
    not_zero = children.filter(pl.col("age_rating") != 0)
    assert (not_zero["decided_by"] == "override").all(), not_zero.select("title", "age_rating", "decided_by")


def test_real_movielens_overrides_all_apply_and_labels_agree(movielens_items):
    assert labels.override_mismatches(movielens_items, RULES).height == 0
    overrides = labels.load_overrides(RULES.parent.parent / labels.load_rules(RULES)["age_rating"]["overrides_csv"])
    assert overrides.join(movielens_items, on="item_id", how="anti").height == 0  # every row names an item
    assert (movielens_items["minor_safe"] == (movielens_items["age_rating"] == 0)).all()
    # The same film listed under two ids gets one rating.
    per_content = movielens_items.group_by("content_key").agg(pl.col("age_rating").n_unique().alias("n"))
    assert per_content["n"].max() == 1
    report = labels.age_band_report(movielens_items)
    assert report["adults"] == movielens_items.height
    assert 0 < report["under-8"] < report["8-12"] < report["12-16"] < report["16-18"] < report["adults"]


# -- frames from before age ratings --------------------------------------------------------------
def _old_items() -> pl.DataFrame:
    data = generate(SyntheticConfig(n_users=5, n_items=40, seed=2))
    return data.items.drop("age_rating")


def test_ensure_age_rating_fills_from_minor_safe_and_back():
    old = pl.DataFrame({"item_id": ["a", "b", "c"], "minor_safe": [True, False, None]})
    assert labels.ensure_age_rating(old)["age_rating"].to_list() == [0, 18, 18]
    partial = old.with_columns(age_rating=pl.Series([None, 12, None], dtype=pl.Int8))
    assert labels.ensure_age_rating(partial)["age_rating"].to_list() == [0, 12, 18]
    only_rating = pl.DataFrame({"item_id": ["a", "b"], "age_rating": [0, 8]})
    assert labels.ensure_age_rating(only_rating)["minor_safe"].to_list() == [True, False]
    neither = pl.DataFrame({"item_id": ["a"]})
    assert labels.ensure_age_rating(neither).columns == ["item_id"]


def test_old_items_without_age_rating_validate_and_load(tmp_path):
    data = generate(SyntheticConfig(n_users=5, n_items=40, seed=2))
    old = _old_items()
    assert "age_rating" not in old.columns
    validated = validate(old, ITEMS, "old/items")
    assert validated["age_rating"].dtype == pl.Int8
    expected = [0 if safe else 18 for safe in old["minor_safe"].to_list()]
    assert validated["age_rating"].to_list() == expected
    # a dataset directory written before age ratings
    folder = tmp_path / "old"
    folder.mkdir()
    data.interactions.write_parquet(folder / "interactions.parquet")
    old.write_parquet(folder / "items.parquet")
    data.users.write_parquet(folder / "users.parquet")
    loaded = Dataset.load(folder)
    assert loaded.items["age_rating"].to_list() == expected
    assert list(loaded.items.columns[: len(ITEMS)]) == list(ITEMS)


def test_validation_rejects_ratings_outside_the_bands():
    items = _old_items().with_columns(age_rating=pl.lit(7, dtype=pl.Int8))
    with pytest.raises(SchemaError, match=r"x/items: column 'age_rating' has value 7"):
        validate(items, ITEMS, "x/items")
    items = _old_items().with_columns(age_rating=pl.lit(300))
    with pytest.raises(SchemaError, match=r"column 'age_rating' has type"):
        validate(items, ITEMS, "x/items")
    items = _old_items().drop("minor_safe")
    with pytest.raises(SchemaError, match=r"missing column\(s\) 'minor_safe', 'age_rating'"):
        validate(items, ITEMS, "x/items")


# -- synthetic data ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 5])
def test_synthetic_ratings_are_valid_seeded_and_consistent(seed):
    config = SyntheticConfig(n_users=20, n_items=3_000, seed=seed)
    items = generate(config).items
    again = generate(config).items
    assert items["age_rating"].equals(again["age_rating"])
    assert items["age_rating"].dtype == pl.Int8
    assert set(items["age_rating"].unique().to_list()) == set(AGE_RATINGS)
    assert (items["minor_safe"] == (items["age_rating"] == 0)).all()
    assert (items.filter(pl.col("flagged"))["age_rating"] == 18).all()
    every = config.unsafe_category_every
    unsafe = items["categories"].list.first().str.slice(3).cast(pl.Int64) % every == every - 1
    assert (items.filter(unsafe)["age_rating"] >= 16).all()
    other_seed = generate(SyntheticConfig(n_users=20, n_items=3_000, seed=seed + 100)).items
    assert not items["age_rating"].equals(other_seed["age_rating"])


# -- report --------------------------------------------------------------------------------------
def test_age_band_report_counts_what_each_band_admits():
    items = pl.DataFrame({
        "item_id": list("abcdefg"),
        "age_rating": pl.Series([0, 0, 8, 12, 16, 18, 0], dtype=pl.Int8),
        "flagged": [False, False, False, False, False, False, True],  # never served: not counted
    })
    report = labels.age_band_report(items)
    assert report == {"under-8": 2, "8-12": 3, "12-16": 4, "16-18": 5, "adults": 6}
    assert labels.format_age_band_report(report).startswith("items admitted per age band: under-8 2, 8-12 3")
    old = pl.DataFrame({"item_id": ["a", "b"], "minor_safe": [True, False]})
    assert labels.age_band_report(old) == {"under-8": 1, "8-12": 1, "12-16": 1, "16-18": 1, "adults": 2}
    with pytest.raises(SchemaError, match="no 'age_rating'"):
        labels.age_band_report(pl.DataFrame({"item_id": ["a"]}))
    counts = list(labels.age_band_report(generate(SyntheticConfig(n_items=500)).items).values())
    assert (np.diff(counts) >= 0).all()  # an older band admits everything a younger one does
