"""Fixtures of the serving tests: the synthetic dataset the test model is trained on, and its users."""

from __future__ import annotations

import polars as pl
import pytest

from recsys.schema import Dataset


@pytest.fixture(scope="module")
def data(synthetic_dir) -> Dataset:
    return Dataset.load(synthetic_dir)


@pytest.fixture(scope="module")
def adults(data) -> list[str]:
    active = data.interactions.group_by("user_id").len().filter(pl.col("len") >= 20)["user_id"]
    return data.users.filter((pl.col("age") >= 18) & pl.col("user_id").is_in(active.to_list()))["user_id"].sort().to_list()
