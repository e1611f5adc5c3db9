"""Fixtures of the serving tests: the synthetic dataset the test model is trained on, its users, and
the app of the test model on a real socket at a daytime clock."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from recsys.schema import Dataset
from tests.conftest import MovableClock
from tests.web.conftest import ThreadedServer

DAYTIME = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai: outside the curfew


@pytest.fixture(scope="module")
def data(synthetic_dir) -> Dataset:
    return Dataset.load(synthetic_dir)


@pytest.fixture(scope="module")
def adults(data) -> list[str]:
    active = data.interactions.group_by("user_id").len().filter(pl.col("len") >= 20)["user_id"]
    return data.users.filter((pl.col("age") >= 18) & pl.col("user_id").is_in(active.to_list()))["user_id"].sort().to_list()


@pytest.fixture
def daytime_site(trained, make_settings):
    """The app of the test model (default settings) on a real socket, its clock at DAYTIME."""
    from serving.app import create_app

    server = ThreadedServer(create_app(make_settings(), clock=MovableClock(DAYTIME), bundle_loader=lambda uri: trained)).start()
    try:
        yield server
    finally:
        server.stop()
