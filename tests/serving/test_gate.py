"""One gate for every route that returns items (serving/gate.py), tested from the outside.

The sweep drives EVERY operation of the OpenAPI schema (admin and operations routes aside) as a
minor in curfew, as an over-budget minor, and as a minor of each age band in daytime. A new route
that returns items without the gate fails it; a new route the sweep cannot build a request for
fails `test_the_sweep_covers_every_user_operation`, so it cannot be skipped silently.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from compliance import minors
from recsys.schema import Dataset
from tests.conftest import MovableClock

DAYTIME = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # 18:00 in Asia/Shanghai
CURFEW = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30 in Asia/Shanghai
BANDS = {"under 8": (0, 7), "8-12": (8, 11), "12-16": (12, 15), "16-18": (16, 17)}
NOT_USER_ROUTES = ("/v1/admin/", "/console", "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")


def user_of_age(data: Dataset, low: int, high: int) -> str:
    users = data.users.filter(pl.col("age").is_between(low, high))["user_id"].sort().to_list()
    assert users, f"the synthetic data has no user aged {low}-{high}"
    return users[0]


def requests_for(client, user_id: str, request_id: str, item_id: str) -> dict[tuple[str, str], dict]:
    """One request per user-facing operation; keys are (method, path template)."""
    return {
        ("post", "/v1/recommendations"): {"json": {"user_id": user_id, "surface": "home"}},
        ("get", "/v1/recommendations/{request_id}"): {"url": f"/v1/recommendations/{request_id}", "params": {"user_id": user_id}},
        ("get", "/v1/trending"): {"params": {"user_id": user_id}},
        ("post", "/v1/events"): {"json": {"events": [{"event_id": f"gate-{user_id}-{request_id[-6:]}", "user_id": user_id,
                                                      "item_id": item_id, "type": "click",
                                                      "ts": client.app.state.services.clock().isoformat()}]}},
        ("get", "/v1/users/{user_id}/settings"): {"url": f"/v1/users/{user_id}/settings"},
        ("put", "/v1/users/{user_id}/settings"): {"url": f"/v1/users/{user_id}/settings", "json": {"personalization": True}},
        ("get", "/v1/users/{user_id}/tags"): {"url": f"/v1/users/{user_id}/tags"},
        ("post", "/v1/users/{user_id}/tags"): {"url": f"/v1/users/{user_id}/tags", "json": {"tag": "__unknown__"}},
        ("delete", "/v1/users/{user_id}/tags/{tag}"): {"url": f"/v1/users/{user_id}/tags/__none__"},
        ("get", "/v1/users/{user_id}/feedback"): {"url": f"/v1/users/{user_id}/feedback"},
        ("post", "/v1/users/{user_id}/feedback"): {"url": f"/v1/users/{user_id}/feedback",
                                                   "json": {"request_id": request_id, "item_id": item_id, "kind": "not_interested"}},
        ("delete", "/v1/users/{user_id}/feedback/{item_id}"): {"url": f"/v1/users/{user_id}/feedback/{item_id}"},
        ("get", "/v1/users/{user_id}/history"): {"url": f"/v1/users/{user_id}/history"},
        ("delete", "/v1/users/{user_id}/history"): {"url": f"/v1/users/{user_id}/history"},
        ("post", "/v1/complaints"): {"json": {"user_id": user_id, "kind": "complaint", "subject_type": "other",
                                            "text": "why this list?"}},
        ("get", "/v1/complaints/{complaint_id}"): {"url": "/v1/complaints/0", "params": {"user_id": user_id}},
        ("get", "/v1/guardians/{guardian_id}/minors/{minor_id}/controls"): {"url": f"/v1/guardians/g-{user_id}/minors/{user_id}/controls"},
        ("put", "/v1/guardians/{guardian_id}/minors/{minor_id}/controls"): {"url": f"/v1/guardians/g-{user_id}/minors/{user_id}/controls",
                                                                            "json": {"daily_minutes": 30}},
        ("get", "/v1/guardians/{guardian_id}/minors/{minor_id}/usage"): {"url": f"/v1/guardians/g-{user_id}/minors/{user_id}/usage"},
        ("get", "/v1/transparency"): {},
        ("get", "/transparency"): {},
        # the privacy center's pages (HTML; its past lists pass the gate: tests/web/test_pages.py drives them logged in)
        ("get", "/me"): {},
        ("get", "/me/login"): {},
        ("post", "/me/login"): {"data": {"user_id": user_id}},
        ("post", "/me/logout"): {},
        ("post", "/me/settings"): {"data": {"personalization": "on"}},
        ("post", "/me/tags/{tag}/{decision}"): {"url": "/me/tags/__none__/delete"},
        ("post", "/me/complaints"): {"data": {"kind": "complaint", "subject_type": "other", "text": "why?"}},
        ("post", "/me/feedback/{request_id}/{item_id}/{kind}"): {"url": f"/me/feedback/{request_id}/{item_id}/not_interested"},
        ("post", "/me/guardian/{minor_id}/controls"): {"url": f"/me/guardian/{user_id}/controls", "data": {"daily_minutes": "30"}},
        ("post", "/me/history/erase"): {},
    }


def user_operations(client) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return sorted(
        (method, path) for path, operations in schema["paths"].items() for method in operations
        if not path.startswith(NOT_USER_ROUTES)
    )


def sweep(client, user_id: str, request_id: str, item_id: str) -> dict[tuple[str, str], object]:
    table = requests_for(client, user_id, request_id, item_id)
    out = {}
    for method, path in user_operations(client):
        spec = dict(table[(method, path)])
        url = spec.pop("url", path)
        out[(method, path)] = client.request(method.upper(), url, **spec)
    return out


def served_items(response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return []
    return [i["item_id"] for i in body.get("items", [])] if isinstance(body, dict) else []


@pytest.fixture
def setup(client_factory, data, trained):
    clock = MovableClock(DAYTIME)
    client = client_factory(clock=clock)
    adult = data.users.filter(pl.col("age") >= 30)["user_id"].sort().to_list()[0]
    first = client.post("/v1/recommendations", json={"user_id": adult}).json()
    bundle, _ = trained
    return client, clock, adult, first["request_id"], str(bundle.items["item_id"][0])


def test_the_sweep_covers_every_user_operation(setup):
    client, clock, adult, request_id, item = setup
    table = requests_for(client, adult, request_id, item)
    missing = [op for op in user_operations(client) if op not in table]
    assert not missing, f"new user-facing operations: add them to the gate sweep: {missing}"
    # the sweep is not vacuous: an adult gets items from these routes
    results = sweep(client, adult, request_id, item)
    serving = {op for op, response in results.items() if served_items(response)}
    assert {("post", "/v1/recommendations"), ("get", "/v1/trending")} <= serving or \
        {("post", "/v1/recommendations")} <= serving, serving


@pytest.mark.parametrize("band", list(BANDS))
def test_a_minor_in_curfew_gets_no_item_from_any_route(setup, data, band):
    client, clock, adult, _, item = setup
    minor = user_of_age(data, *BANDS[band])
    served = client.post("/v1/recommendations", json={"user_id": minor})  # daytime: allowed
    assert served.status_code == 200, served.text
    clock.now = CURFEW
    for operation, response in sweep(client, minor, served.json()["request_id"], item).items():
        items = served_items(response)
        assert not items, f"{operation} served {len(items)} items to a minor ({band}) in curfew"
        if operation in (("post", "/v1/recommendations"), ("get", "/v1/trending"), ("get", "/v1/recommendations/{request_id}")):
            assert response.status_code == 403 and response.json()["code"] == "minors_curfew", (operation, response.text)


@pytest.mark.parametrize("band", list(BANDS))
def test_an_over_budget_minor_gets_no_item_from_any_route(setup, data, band):
    client, clock, adult, _, item = setup
    minor = user_of_age(data, *BANDS[band])
    served = client.post("/v1/recommendations", json={"user_id": minor})
    assert served.status_code == 200
    services = client.app.state.services
    config = services.settings.minors
    age = data.users.filter(pl.col("user_id") == minor)["age"][0]
    budget_s = config.daily_budget_minutes(age) * 60
    services.store.put_usage(minor, minors.local_day(DAYTIME, config), DAYTIME, budget_s)
    for operation, response in sweep(client, minor, served.json()["request_id"], item).items():
        assert not served_items(response), f"{operation} served items to an over-budget minor ({band})"
        if operation in (("post", "/v1/recommendations"), ("get", "/v1/trending")):
            assert response.status_code == 403 and response.json()["code"] == "minors_daily_limit", (operation, response.text)


@pytest.mark.parametrize("band", list(BANDS))
def test_each_band_gets_only_items_rated_for_it_on_every_route(setup, data, trained, band):
    client, clock, adult, _, item = setup
    bundle, _ = trained
    rating = dict(zip(bundle.items["item_id"].to_list(), bundle.items["age_rating"].to_list()))
    low, high = BANDS[band]
    minor = user_of_age(data, low, high)
    limit = client.app.state.services.settings.minors.max_age_rating(low)
    # trending: make a mature item hot, so the band rule has something to remove
    flagged = set(bundle.items.filter(pl.col("flagged"))["item_id"].to_list())
    mature = [i for i, r in rating.items() if r > limit and i not in flagged][:3]
    now = clock()
    events = [{"event_id": f"hot-{low}-{n}", "user_id": u, "item_id": mature[n % 3], "type": "share", "ts": now.isoformat()}
              for n, u in enumerate(data.users.filter(pl.col("age") >= 30)["user_id"].to_list()[:60])]
    assert client.post("/v1/events", json={"events": events}).status_code == 200
    first = client.post("/v1/recommendations", json={"user_id": minor, "surface": "home", "k": 20}).json()
    results = sweep(client, minor, first["request_id"], item)
    pages = [client.post("/v1/recommendations", json={"user_id": minor, "surface": s, "page": p, "k": 20,
                                                      "session_id": first["session_id"] if s == "home" else None})
             for s in ("home", "feed", "related", "trending") for p in (0, 1)]
    seen = 0
    for response in [*results.values(), *pages]:
        for item_id in served_items(response):
            seen += 1
            assert rating[item_id] <= limit, f"item {item_id} rated {rating[item_id]}+ served to a minor aged {low}-{high}"
    assert seen > 50
    adult_trending = served_items(client.get("/v1/trending", params={"user_id": adult}))
    assert set(mature) & set(adult_trending), "the mature items are hot for adults (the test is not vacuous)"
