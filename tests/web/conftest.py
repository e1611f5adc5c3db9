"""Fixtures of the page tests: the app around the trained model on a real socket (uvicorn in a
thread, 127.0.0.1, a free port), named operator accounts, and headless Debian Chromium driven by
Selenium through Debian's chromedriver (nothing downloads a browser)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
import pytest
import uvicorn

from recsys.schema import Dataset
from tests.conftest import MovableClock, free_port

PASSWORD = "a long enough password"
ACCOUNTS = {"olga": "operator", "alice": "approver", "bob": "approver", "audrey": "auditor"}
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


class ThreadedServer:
    """uvicorn serving `app` on 127.0.0.1 in a thread; `stop` ends it (bounded)."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout_s: float = 60) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread ended before it started")
            time.sleep(0.05)
        assert self.server.started, "server did not start in time"
        assert httpx.get(f"{self.url}/readyz", timeout=10).status_code == 200
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def services(self):
        return self.app.state.services


@pytest.fixture(scope="module")
def adults(synthetic_dir) -> list[str]:
    data = Dataset.load(synthetic_dir)
    active = data.interactions.group_by("user_id").len().filter(pl.col("len") >= 25)["user_id"]
    return data.users.filter((pl.col("age") >= 18) & pl.col("user_id").is_in(active.to_list()))["user_id"].sort().to_list()


def _site(trained, make_settings, **app_options) -> Iterator[ThreadedServer]:
    from serving.app import create_app

    app = create_app(make_settings(), bundle_loader=lambda uri: trained, **app_options)
    server = ThreadedServer(app).start()
    for name, role in ACCOUNTS.items():
        server.services.accounts.add(name, role, PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def site(trained, make_settings) -> Iterator[ThreadedServer]:
    """The whole app (JSON API and pages) on a real socket, with one account per role."""
    yield from _site(trained, make_settings)


@pytest.fixture
def daytime_site(trained, make_settings) -> Iterator[ThreadedServer]:
    """`site` with its clock at a fixed daytime (10:00 in Asia/Shanghai), for a test that serves lists
    to minors: on the real clock they would meet the minors' rest time for eight hours of each day."""
    yield from _site(trained, make_settings, clock=MovableClock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC)))


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the tests write a screenshot of each page: a temporary folder, or RECSYS_TEST_SCREENSHOTS
    (a few of them are committed under docs/screenshots/)."""
    chosen = os.environ.get("RECSYS_TEST_SCREENSHOTS")
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return Path(chosen)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser() -> Iterator:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (scripts/test-deps.sh installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
