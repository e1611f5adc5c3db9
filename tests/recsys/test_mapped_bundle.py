"""A loaded bundle maps its per-item arrays and its Faiss index read-only from the bundle's files,
so processes serving one bundle share its pages; ids -> rows are sorted arrays (IdIndex) that
behave as the dicts they replace; a bundle written before columns/ gets them on first load."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.memory import mapped_files_kb
from recsys.bundle import ModelBundle
from recsys.columns import COLUMNS_DIR
from recsys.datasets.synthetic import SyntheticConfig, generate
from recsys.idmap import IdIndex
from served.catalog import Catalog
from training.config import TrainingConfig
from training.pipeline import run_offline

SMALL = {
    "als": {"factors": 16, "regularization": 1.0, "iterations": 4},
    "n_candidates": 40,
    "ranker": {"params": {"hidden": [8], "epochs": 2}},
}
READY_TIMEOUT_S = 120

# A second process: load the bundle, touch every page of its biggest arrays and search the index,
# say "ready", then hold the mappings until stdin closes.
HOLDER = """
import sys
import numpy as np
from recsys.bundle import ModelBundle
bundle = ModelBundle.load(sys.argv[1], serving=False)
total = float(np.asarray(bundle.item_factors).sum()) + float(np.asarray(bundle.stats.unit_factors).sum())
total += float(np.asarray(bundle.columns.popular_order).sum()) + len(str(bundle.columns.titles.tolist()))
bundle.index.search(np.asarray(bundle.item_factors[:4]), 5)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    data = generate(SyntheticConfig(n_users=120, n_items=3_000, interactions_per_user=20, seed=3))
    return run_offline(data, TrainingConfig.model_validate(SMALL), tmp_path_factory.mktemp("mapped")).bundle_dir


def mapped_paths(pid: int | str = "self") -> dict[str, str]:
    """Path -> permissions of every file mapping of a process."""
    found = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            found[parts[5]] = parts[1]
    return found


def in_file_mapping(values: np.ndarray) -> bool:
    """Whether the array's data lies in a shared file mapping of this process (not a private copy)."""
    pointer = values.__array_interface__["data"][0]
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/") and parts[1].endswith("s"):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= pointer < end:
                return True
    return False


def test_arrays_and_index_are_mapped_read_only(bundle_dir):
    bundle = ModelBundle.load(bundle_dir, serving=False)
    columns = bundle.columns
    for name, values in [("item_factors", bundle.item_factors), ("user_factors", bundle.user_factors),
                         ("item_ids", bundle.item_ids), ("history", bundle.history.items),
                         ("unit_factors", bundle.stats.unit_factors), ("titles", columns.titles),
                         ("category_codes", columns.category_codes), ("item ids sorted", columns.item_id_sorted),
                         ("popular_order", columns.popular_order)]:
        # a plain ndarray view (no memmap indexing overhead) of the file's shared pages, read-only
        assert type(values) is np.ndarray and not values.flags.writeable, name
        assert in_file_mapping(values), f"{name} is the file's pages, not a copy"
    maps = mapped_paths()
    index_file = str((bundle_dir / "index" / "index.faiss").resolve())
    assert maps.get(index_file, "").startswith("r--s"), "the Faiss index is mapped shared and read-only"
    assert maps.get(str((bundle_dir / COLUMNS_DIR / "titles.npy").resolve()), "").startswith("r--s")
    # the second candidate source too: its index shared read-only, its network's tensors mapped from the file
    sequential = bundle.sequential
    assert sequential is not None, "the sequential source is on by default"
    assert maps.get(str((bundle_dir / "sequential" / "index" / "index.faiss").resolve()), "").startswith("r--s")
    model_file = str((bundle_dir / "sequential" / "model.pt").resolve())
    ranges = [tuple(int(x, 16) for x in line.split()[0].split("-"))
              for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(model_file)]
    pointer = sequential.model.network.items.weight.data_ptr()
    assert any(start <= pointer < end for start, end in ranges), "the item embeddings are the file's pages, not a copy"
    assert sequential.user_queries is None or isinstance(sequential.user_queries, np.memmap)


def test_mapped_columns_equal_the_items_frame(bundle_dir):
    bundle = ModelBundle.load(bundle_dir, serving=False)
    catalog = Catalog.from_bundle(bundle, "1")
    items = bundle.items
    assert catalog.titles.tolist() == items["title"].to_list()
    assert [catalog.item_categories[i] for i in range(len(items))] == [
        [c for c in dict.fromkeys(cats or []) if c is not None] for cats in items["categories"].to_list()]
    assert np.array_equal(catalog.flagged, items["flagged"].fill_null(False).to_numpy())
    popularity = np.asarray(bundle.popularity)
    assert np.array_equal(catalog.popular_order, np.lexsort((np.arange(len(popularity)), -popularity)))
    assert np.array_equal(bundle.popular(7), catalog.popular_order[:7])
    ids = [str(i) for i in bundle.item_ids]
    assert dict(zip(ids, range(len(ids)))) == dict(bundle.item_index.items())
    assert list(bundle.user_index) == [str(u) for u, n in zip(bundle.user_ids, np.diff(bundle.history.indptr)) if n > 0]


def test_a_bundle_without_columns_gets_them_on_first_load(bundle_dir, tmp_path):
    reference = ModelBundle.load(bundle_dir, serving=False)
    old = tmp_path / "old-bundle"
    shutil.copytree(bundle_dir, old)
    shutil.rmtree(old / COLUMNS_DIR)
    (old / ".columns-leftover").mkdir()  # an interrupted writer's staging folder does not matter
    loaded = ModelBundle.load(old, serving=False)
    assert (old / COLUMNS_DIR / "columns.json").exists()
    users = np.arange(min(20, len(reference.user_ids)))
    assert np.array_equal(loaded.recommend(users, 10), reference.recommend(users, 10))


def test_two_processes_share_the_bundle_pages(bundle_dir):
    """Each page of the bundle's mapped files is counted once in total across the processes that
    map it: a process's PSS of those files is at most about half their RSS when two hold them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))}
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(bundle_dir)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env, text=True) for _ in range(2)]
    try:
        for holder in holders:
            ready, _, _ = select.select([holder.stdout], [], [], READY_TIMEOUT_S)
            assert ready and holder.stdout.readline().strip() == "ready", "the holder did not load the bundle"
        for holder in holders:
            files = mapped_files_kb(holder.pid, bundle_dir)
            assert files["Rss"] > 0
            assert files["Pss"] <= 0.6 * files["Rss"], files
    finally:
        for holder in holders:
            holder.stdin.close()
            holder.wait(timeout=60)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(min_size=0, max_size=12), unique=True, max_size=40),
       probes=st.lists(st.text(max_size=14), max_size=20))
def test_id_index_behaves_as_the_dict_it_replaces(ids, probes):
    ids = [i for i in ids if not i.endswith("\0")]  # numpy unicode strips trailing NULs; ids never end in one
    expected = {item: row for row, item in enumerate(ids)}
    index = IdIndex.of(np.asarray(ids, dtype=str) if ids else np.zeros(0, dtype="<U1"))
    assert dict(index.items()) == expected and list(index) == ids and len(index) == len(ids)
    for probe in [*probes, *ids, *(i + "\0" for i in ids), *(i + "x" * 20 for i in ids)]:
        assert (probe in index) == (probe in expected)
        assert index.get(probe) == expected.get(probe)
    assert 7 not in index and index.get(None) is None  # type: ignore[arg-type]
    assert list(index.lookup([*ids, "missing-id" * 3])) == [*range(len(ids)), -1]


def test_id_index_rejects_duplicates():
    with pytest.raises(ValueError, match="'a' appears more than once"):
        IdIndex.of(np.asarray(["b", "a", "a"]))
