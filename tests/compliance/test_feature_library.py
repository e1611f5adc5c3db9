"""Feature library (Art. 9): entry standards, keyword/regex/exemplar matching, immutability, files."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.feature_library import (
    FeatureEntry,
    FeatureLibrary,
    FeatureLibraryError,
    load_library,
    save_library,
    validate_entry,
)


def keyword(entry_id: str, pattern: str, **extra) -> FeatureEntry:
    return FeatureEntry(id=entry_id, kind="keyword", pattern=pattern, category="spam", author="editor", **extra)


def regex(entry_id: str, pattern: str) -> FeatureEntry:
    return FeatureEntry(id=entry_id, kind="regex", pattern=pattern, category="harmful", author="editor")


def exemplar(entry_id: str, threshold: float = 0.95, **where) -> FeatureEntry:
    return FeatureEntry(id=entry_id, kind="exemplar", category="illegal", author="editor", threshold=threshold, **where)


# -- entry standards -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"kind": "keyword", "pattern": "  ", "category": "spam", "author": "a"}, "non-empty pattern"),
        ({"kind": "keyword", "pattern": "x", "category": "gossip", "author": "a"}, "category"),
        ({"kind": "keyword", "pattern": "x", "category": "spam"}, "author"),
        ({"kind": "keyword", "pattern": "x", "category": "spam", "author": "  "}, "author"),
        ({"kind": "regex", "pattern": "([a-z", "category": "spam", "author": "a"}, "does not compile"),
        ({"kind": "regex", "pattern": "(a+)+$", "category": "spam", "author": "a"}, "catastrophic backtracking"),
        ({"kind": "regex", "pattern": r"(\w*)*", "category": "spam", "author": "a"}, "catastrophic backtracking"),
        ({"kind": "regex", "pattern": "(?<=x)y", "category": "spam", "author": "a"}, "look-around"),
        ({"kind": "regex", "pattern": "a" * 600, "category": "spam", "author": "a"}, "at most 512"),
        ({"kind": "exemplar", "category": "illegal", "author": "a"}, "exactly one of exemplar_item_id or vector"),
        ({"kind": "exemplar", "vector": [0.0, 0.0], "category": "illegal", "author": "a"}, "non-zero"),
        ({"kind": "exemplar", "vector": [1.0], "threshold": 1.5, "category": "illegal", "author": "a"}, "threshold"),
        ({"kind": "exemplar", "pattern": "x", "exemplar_item_id": "i1", "category": "illegal", "author": "a"}, "not a pattern"),
        ({"id": "bad id!", "kind": "keyword", "pattern": "x", "category": "spam", "author": "a"}, "id"),
    ],
)
def test_validate_entry_rejects_entries_below_standard_with_a_message_naming_the_field(raw, fragment):
    with pytest.raises(FeatureLibraryError, match="feature entry") as info:
        validate_entry(raw)
    assert fragment in str(info.value)


def test_safe_regexes_and_well_formed_entries_pass():
    for pattern in [r"(?i)free\s+money", "(ab)+", "a+b+", "(a+){2}", r"\d{3,}-\d{4}"]:
        assert validate_entry({"kind": "regex", "pattern": pattern, "category": "spam", "author": "a"}).pattern == pattern
    entry = validate_entry({"id": "ex-1", "kind": "exemplar", "exemplar_item_id": "i9", "category": "illegal", "author": "a"})
    assert entry.threshold == 0.95 and entry.created_at.tzinfo is not None


def test_validate_entry_checks_against_the_library_and_the_catalogue():
    library = FeatureLibrary([keyword("k1", "casino")])
    with pytest.raises(FeatureLibraryError, match="already in the library"):
        validate_entry(keyword("k1", "other"), library=library)
    with pytest.raises(FeatureLibraryError, match="not in the catalogue"):
        validate_entry(exemplar("x1", exemplar_item_id="missing"), item_ids=["i1", "i2"])
    with pytest.raises(FeatureLibraryError, match="dimensions"):
        validate_entry(exemplar("x2", vector=(1.0, 0.0)), dim=3)


# -- matching ----------------------------------------------------------------------------------------
def test_keywords_and_regexes_flag_titles_and_extra_text_fields():
    library = FeatureLibrary([keyword("k-casino", "Casino"), regex("r-money", r"(?i)free\s+money")])
    titles = ["Casino Royale night", "A quiet film", "FREE   Money now", "ＣＡＳＩＮＯ full-width", "plain"]
    descriptions = ["", "", "", "", "win free money today"]
    match = library.match(titles, None, [f"i{i}" for i in range(5)], texts={"description": descriptions})
    assert match.blocked.tolist() == [True, False, True, True, True]
    assert match.entry_for_item == {0: "k-casino", 2: "r-money", 3: "k-casino", 4: "r-money"}
    assert match.counts == {"k-casino": 2, "r-money": 2}
    assert match.blocked_count == 4


def test_first_matching_entry_in_library_order_is_reported_and_counts_cover_all_matches():
    library = FeatureLibrary([keyword("first", "bad"), keyword("second", "bad word")])
    match = library.match(["a bad word", "bad"], None, ["a", "b"])
    assert match.entry_for_item == {0: "first", 1: "first"}
    assert match.counts == {"first": 2, "second": 1}


def test_exemplars_match_items_above_their_cosine_threshold_through_faiss():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    bad = vectors[10]
    vectors[20] = 3.0 * bad + 0.01 * rng.normal(size=16)  # same direction, different norm: cosine ~1
    vectors[30] = bad + 0.9 * rng.normal(size=16)  # loosely similar
    item_ids = [f"i{i}" for i in range(500)]
    cosine_30 = float(vectors[30] @ bad / np.linalg.norm(vectors[30]) / np.linalg.norm(bad))
    library = FeatureLibrary([exemplar("by-item", exemplar_item_id="i10")])
    match = library.match([""] * 500, vectors, item_ids)
    assert set(np.flatnonzero(match.blocked)) == {10, 20}
    loose = FeatureLibrary([exemplar("loose", threshold=cosine_30 - 0.01, vector=tuple(bad.tolist()))])
    loose_match = loose.match([""] * 500, vectors, item_ids)
    assert {10, 20, 30} <= set(np.flatnonzero(loose_match.blocked))
    assert loose_match.counts["loose"] == int(loose_match.blocked.sum())


def test_exemplars_without_a_known_embedding_are_reported_not_fatal():
    library = FeatureLibrary([exemplar("gone", exemplar_item_id="not-in-catalogue"), keyword("k", "spam")])
    match = library.match(["spam", "ok"], np.eye(2, dtype=np.float32), ["a", "b"])
    assert match.blocked.tolist() == [True, False]
    assert "gone" in match.unresolved
    wrong_dim = FeatureLibrary([exemplar("short", vector=(1.0, 0.0, 0.0))]).match(["x"], np.eye(1, 2), ["a"])
    assert "dimensions" in wrong_dim.unresolved["short"]


def test_match_rejects_misaligned_inputs_with_a_clear_message():
    library = FeatureLibrary([keyword("k", "x")])
    with pytest.raises(FeatureLibraryError, match="titles has 1 rows, item_ids has 2"):
        library.match(["x"], None, ["a", "b"])
    with pytest.raises(FeatureLibraryError, match="item_vectors must have shape"):
        library.match(["x", "y"], np.zeros((3, 4)), ["a", "b"])


def test_match_one_agrees_with_match_and_uses_remembered_exemplar_vectors():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    item_ids = [f"i{i}" for i in range(50)]
    library = FeatureLibrary([keyword("k", "casino"), exemplar("x", exemplar_item_id="i3")])
    assert library.match_one("Casino night") == "k"
    assert library.match_one("quiet", vectors[3]) is None  # embedding of i3 not known yet
    remembered = library.with_exemplar_vectors(item_ids, vectors)
    assert remembered.match_one("quiet", 2.0 * vectors[3]) == "x"
    assert remembered.match_one("quiet", vectors[4]) is None
    with pytest.raises(FeatureLibraryError, match="dimensions"):
        remembered.match_one("quiet", np.ones(3))


TITLE_ALPHABET = st.sampled_from(list("abcdeXYZ  -ＡＢé0123"))


@settings(max_examples=60, deadline=None)
@given(titles=st.lists(st.text(TITLE_ALPHABET, max_size=20), min_size=1, max_size=25))
def test_property_batch_and_single_matching_agree(titles):
    library = FeatureLibrary([keyword("k1", "ab"), keyword("k2", "ＸＹ"), regex("r1", r"\d{2}-[a-c]+"), regex("r2", "(?i)é+z")])
    match = library.match(titles, None, [str(i) for i in range(len(titles))])
    for i, title in enumerate(titles):
        assert library.match_one(title) == match.entry_for_item.get(i)
        assert bool(match.blocked[i]) == (i in match.entry_for_item)


def test_keyword_matching_scales_to_a_million_titles():
    n = 1_000_000
    titles = [f"title number {i}" for i in range(n)]
    titles[123_456] = "Big CASINO bonus"
    library = FeatureLibrary([keyword("k", "casino"), regex("r", r"bonus\s+\d+")])
    started = time.perf_counter()
    match = library.match(titles, None, [str(i) for i in range(n)])
    elapsed = time.perf_counter() - started
    assert np.flatnonzero(match.blocked).tolist() == [123_456]
    print(f"1M titles matched in {elapsed:.2f} s")  # speed is reported, not asserted (noisy shared machines)


# -- immutability and files --------------------------------------------------------------------------
def test_add_and_remove_return_new_libraries_and_leave_the_original_unchanged():
    base = FeatureLibrary([keyword("k1", "casino")])
    grown = base.add({"id": "k2", "kind": "keyword", "pattern": "lottery", "category": "spam", "author": "ops"})
    assert len(base) == 1 and len(grown) == 2 and "k2" in grown and "k2" not in base
    shrunk = grown.remove("k1")
    assert [e.id for e in shrunk.entries] == ["k2"] and len(grown) == 2
    assert shrunk.match_one("casino lottery") == "k2"
    with pytest.raises(FeatureLibraryError, match="no entry with id 'nope'"):
        base.remove("nope")
    with pytest.raises(FeatureLibraryError, match="already in the library"):
        base.add(keyword("k1", "again"))
    with pytest.raises(FeatureLibraryError, match="duplicate entry id"):
        FeatureLibrary([keyword("d", "a"), keyword("d", "b")])
    with pytest.raises(Exception, match="frozen"):
        base.entries[0].pattern = "changed"


def test_save_and_load_round_trip_atomically(tmp_path):
    path = tmp_path / "lib" / "feature-library.jsonl"
    library = FeatureLibrary(
        [keyword("k1", "casino", note="seen in reports"), regex("r1", r"(?i)free\s+money"), exemplar("x1", vector=(0.5, 0.5, 0.0))]
    )
    save_library(library, path)
    loaded = load_library(path)
    assert loaded.entries == library.entries
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temporary files left
    save_library(loaded.remove("k1"), path)
    assert [e.id for e in load_library(path).entries] == ["r1", "x1"]
    assert len(load_library(tmp_path / "absent.jsonl")) == 0


def test_load_library_names_the_file_and_line_of_a_bad_entry(tmp_path):
    path = tmp_path / "lib.jsonl"
    good = keyword("k1", "casino").model_dump_json()
    path.write_text(good + "\n\n" + json.dumps({"kind": "regex", "pattern": "(", "category": "spam", "author": "a"}) + "\n")
    with pytest.raises(FeatureLibraryError, match=r"lib\.jsonl:3: .*does not compile"):
        load_library(path)
    path.write_text(good + "\n{not json\n")
    with pytest.raises(FeatureLibraryError, match=r"lib\.jsonl:2: not valid JSON"):
        load_library(path)
    path.write_text(good + "\n" + good + "\n")
    with pytest.raises(FeatureLibraryError, match=r"lib\.jsonl:2: duplicate entry id 'k1'"):
        load_library(path)
