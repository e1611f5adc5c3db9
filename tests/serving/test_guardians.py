"""Minors mode, 2024 guideline, over HTTP: guardian controls and the rest reminder, every age band,
with a moved clock. A guardian can only make the rules stricter; a stored control that cannot be read
never takes serving down; another account cannot read or change a minor's controls."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compliance import minors
from serving.auth import AuthConfig
from tests.conftest import ADMIN_TOKEN, MovableClock
from tests.serving.test_auth import SECRET, token
from tests.serving.test_gate import BANDS, user_of_age

DAYTIME = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Operator": "alice"}


def link(client, minor: str, guardian: str) -> dict:
    response = client.put(f"/v1/admin/guardians/{minor}", json={"guardian_id": guardian}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def controls_url(guardian: str, minor: str) -> str:
    return f"/v1/guardians/{guardian}/minors/{minor}/controls"


def served(client, minor: str, surface: str = "home", k: int = 10):
    return client.post("/v1/recommendations", json={"user_id": minor, "surface": surface, "k": k})


@pytest.fixture
def daytime_client(client_factory):
    clock = MovableClock(DAYTIME)
    return client_factory(clock=clock), clock


@pytest.mark.parametrize("band", list(BANDS))
def test_a_guardian_lowers_the_daily_limit_of_every_band(daytime_client, data, band):
    client, clock = daytime_client
    minor = user_of_age(data, *BANDS[band])
    linked = link(client, minor, f"parent-{minor}")
    config = client.app.state.services.settings.minors
    age = data.users.filter(pl.col("user_id") == minor)["age"][0]
    assert linked["effective_daily_minutes"] == config.daily_budget_minutes(age)
    put = client.put(controls_url(f"parent-{minor}", minor), json={"daily_minutes": 15})
    assert put.status_code == 200 and put.json()["effective_daily_minutes"] == 15
    client.app.state.services.store.put_usage(minor, minors.local_day(DAYTIME, config), DAYTIME, 14 * 60)
    assert served(client, minor).status_code == 200
    clock.now = DAYTIME + timedelta(minutes=2)
    assert served(client, minor).status_code == 200  # 14 minutes used before it: allowed, then 16
    clock.now = DAYTIME + timedelta(minutes=3)
    refused = served(client, minor)
    assert refused.status_code == 403 and refused.json()["code"] == "minors_daily_limit"
    assert "the 15 minutes for today" in refused.json()["detail"]
    usage = client.get(f"/v1/guardians/parent-{minor}/minors/{minor}/usage").json()
    assert usage["daily_limit_minutes"] == 15 and usage["days"][-1]["minutes_used"] >= 15


def test_a_guardian_cannot_loosen_the_configured_rules(daytime_client, data):
    client, _ = daytime_client
    minor = user_of_age(data, *BANDS["12-16"])
    link(client, minor, "parent-x")
    body = client.put(controls_url("parent-x", minor), json={"daily_minutes": 600, "max_age_rating": 16}).json()
    assert body["effective_daily_minutes"] == 60 and body["effective_max_age_rating"] == 12
    assert body["curfews"] == ["22:00-06:00"]
    for bad in ({"daily_minutes": 0}, {"curfew_start": "21:00"}, {"max_age_rating": 18}, {"max_age_rating": 7},
                {"curfew_start": "21:00", "curfew_end": "21:00"}, {"bedtime": "20:00"},
                {"curfew_start": "05:00", "curfew_end": "23:00"}):  # with 22:00-06:00: no time left in the day
        response = client.put(controls_url("parent-x", minor), json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["x-request-id"]


def test_the_guardians_curfew_applies_in_addition_and_chains_into_the_night(daytime_client, data):
    client, clock = daytime_client
    minor = user_of_age(data, *BANDS["8-12"])
    link(client, minor, "parent-c")
    body = client.put(controls_url("parent-c", minor), json={"curfew_start": "18:00", "curfew_end": "22:30"}).json()
    assert body["curfews"] == ["22:00-06:00", "18:00-22:30"]
    clock.now = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)  # 18:30 local
    refused = served(client, minor)
    assert refused.status_code == 403 and refused.json()["code"] == "minors_curfew"
    # the guardian's window runs into the configured one: the minor may come back at 06:00 next day
    resume = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)  # 06:00 local on 3 March
    assert refused.json()["retry_after_seconds"] == int((resume - clock.now).total_seconds())
    assert "resume at 06:00" in refused.json()["detail"]
    clock.now = datetime(2026, 3, 2, 9, 59, tzinfo=UTC)  # 17:59 local
    assert served(client, minor).status_code == 200


@pytest.mark.parametrize("band", list(BANDS))
def test_a_guardian_narrows_the_content_band_on_every_surface(daytime_client, data, trained, band):
    client, _ = daytime_client
    bundle, _ = trained
    rating = dict(zip(bundle.items["item_id"].to_list(), bundle.items["age_rating"].to_list()))
    minor = user_of_age(data, *BANDS[band])
    link(client, minor, "parent-r")
    assert client.put(controls_url("parent-r", minor), json={"max_age_rating": 0}).status_code == 200
    seen = 0
    for surface in ("home", "feed", "related", "trending"):
        response = served(client, minor, surface, 20)
        assert response.status_code == 200, response.text
        for item in response.json()["items"]:
            seen += 1
            assert rating[item["item_id"]] == 0, f"{surface}: item rated {rating[item['item_id']]}+ despite the guardian"
    for item in client.get("/v1/trending", params={"user_id": minor}).json()["items"]:
        assert rating[item["item_id"]] == 0
    assert seen >= 40


@pytest.mark.parametrize("band", list(BANDS))
def test_the_rest_reminder_after_30_minutes_of_continuous_use(daytime_client, data, band):
    client, clock = daytime_client
    minor = user_of_age(data, *BANDS[band])
    reminders = []
    for minute in range(0, 36, 4):  # a request every 4 minutes: continuous use
        clock.now = DAYTIME + timedelta(minutes=minute)
        response = served(client, minor)
        assert response.status_code == 200, response.text
        reminders.append((minute, response.json()["rest_reminder"], response.headers.get("x-rest-reminder")))
    for minute, body, header in reminders:
        if minute < 30:
            assert body is None and header is None, minute
        else:
            assert body["continuous_minutes"] == minute and "rest" in body["message"]
            assert header == f"continuous-minutes={minute}"
    clock.now = DAYTIME + timedelta(minutes=50)  # a pause longer than the gap cap (5 minutes): rested
    assert served(client, minor).json()["rest_reminder"] is None
    adult = data.users.filter(pl.col("age") >= 30)["user_id"].sort().to_list()[0]
    assert served(client, adult).json()["rest_reminder"] is None  # adults are not reminded


def test_only_the_linked_guardian_sees_or_changes_the_controls(client_factory, data):
    client = client_factory(clock=MovableClock(DAYTIME), auth=AuthConfig(mode="jwt", jwt_secret=SECRET))
    minor = user_of_age(data, *BANDS["12-16"])
    link(client, minor, "mum")
    assert client.get(controls_url("mum", minor), headers=token("mum")).status_code == 200
    assert client.get(controls_url("mum", minor), headers=token(minor)).status_code == 403  # the minor themself
    assert client.put(controls_url("mum", minor), json={"daily_minutes": 5}, headers=token("stranger")).status_code == 403
    # a guardian of nobody (or of another minor) learns nothing
    assert client.get(controls_url("stranger", minor), headers=token("stranger")).status_code == 404
    assert client.put(f"/v1/admin/guardians/{minor}", json={"guardian_id": "x"}).status_code == 401
    # every change is in the tamper-evident log, with who made it
    assert client.put(controls_url("mum", minor), json={"daily_minutes": 20}, headers=token("mum")).status_code == 200
    from compliance.logstore.query import query

    logs = client.app.state.services.logstore.config.dir
    rows = query(logs, kind="guardian_controls")
    assert rows.height == 1 and "mum" in str(rows.row(0)) and "daily_minutes" in str(rows.row(0))
    assert query(logs, kind="guardian_link").height == 1


def test_unreadable_stored_controls_leave_the_configured_rules_in_force(daytime_client, data):
    client, _ = daytime_client
    minor = user_of_age(data, *BANDS["16-18"])
    link(client, minor, "parent-u")
    store = client.app.state.services.store
    from sqlalchemy import update

    from serving.state import db

    with store.engine.begin() as conn:  # as an older release or a hand edit might have left it
        conn.execute(update(db.guardians).values(controls={"daily_minutes": "lots", "bedtime": 7}))
    response = served(client, minor)
    assert response.status_code == 200, response.text
    assert client.get(controls_url("parent-u", minor)).json()["effective_daily_minutes"] == 120


times = st.times().map(lambda t: t.replace(microsecond=0, second=0))


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)).map(lambda d: d.replace(tzinfo=UTC)),
    age=st.one_of(st.none(), st.integers(0, 17)),
    used=st.floats(0, 200 * 60),
    daily=st.one_of(st.none(), st.integers(1, 300)),
    window=st.one_of(st.none(), st.tuples(times, times).filter(lambda w: w[0] != w[1])),
    rating=st.one_of(st.none(), st.sampled_from([0, 8, 12, 16])),
)
def test_guardian_controls_never_loosen_a_rule(moment, age, used, daily, window, rating):
    config = minors.MinorsConfig()
    controls = minors.GuardianControls(daily_minutes=daily, curfew_start=window[0] if window else None,
                                       curfew_end=window[1] if window else None, max_age_rating=rating)
    assume(minors.curfews_leave_time(config, controls))  # the route refuses a whole-day curfew (tested over HTTP)
    usage = minors.UsageState(day=minors.local_day(moment, config), last_activity=moment, seconds_used=used)
    plain = minors.check_access(moment, age, True, usage, config)
    guarded = minors.check_access(moment, age, True, usage, config, controls)
    assert not guarded.allowed or plain.allowed
    assert guarded.budget_minutes <= plain.budget_minutes
    assert minors.max_age_rating(age, True, config, controls) <= minors.max_age_rating(age, True, config)
    if not guarded.allowed and guarded.code == "minors_curfew":
        resume = moment + timedelta(seconds=guarded.retry_after_seconds)
        assert not any(minors.in_curfew(resume, config, w) for w in minors.curfews(config, controls))
        assert all(isinstance(w[0], time) for w in minors.curfews(config, controls))


def test_a_minor_cannot_switch_off_the_minors_mode_a_guardian_link_put_on(daytime_client, data):
    client, _ = daytime_client
    adult_age_unknown = data.users.filter(pl.col("age") >= 30)["user_id"].sort().to_list()[5]  # a child on a parent's profile
    link(client, adult_age_unknown, "parent-m")
    assert client.get(f"/v1/users/{adult_age_unknown}/settings").json()["minor"] is True
    for change in ({"minor_mode": False}, {"minor_mode": None}):
        refused = client.put(f"/v1/users/{adult_age_unknown}/settings", json=change)
        assert refused.status_code == 403 and "guardian" in refused.json()["detail"]
    assert client.put(f"/v1/users/{adult_age_unknown}/settings", json={"personalization": False}).status_code == 200
    assert client.get(f"/v1/users/{adult_age_unknown}/settings").json()["minor"] is True
    assert served(client, adult_age_unknown).json()["minor_mode"] is True


# -- attacks (red team): who may be a guardian, stored controls that are not even JSON, hostile values ------------
def test_a_guardian_is_another_person_and_not_a_minor(daytime_client, data):
    """A minor cannot be made their own guardian, nor another minor's; a ward guards no one; a repeated
    link keeps what the guardian set, a new guardian starts afresh."""
    client, _ = daytime_client
    teen, child = user_of_age(data, *BANDS["16-18"]), user_of_age(data, *BANDS["8-12"])
    for minor, guardian in ((teen, teen), (child, teen)):
        refused = client.put(f"/v1/admin/guardians/{minor}", json={"guardian_id": guardian}, headers=ADMIN)
        assert refused.status_code == 422 and "guardian" in refused.json()["detail"], refused.text
    link(client, child, "mum")
    assert client.put(f"/v1/admin/guardians/{teen}", json={"guardian_id": child}, headers=ADMIN).status_code == 422  # in care
    adult_profile = data.users.filter(pl.col("age") >= 30)["user_id"].sort().to_list()[2]
    link(client, adult_profile, "parent-p")  # a child on a parent's profile: minors mode by the link
    assert client.put(f"/v1/admin/guardians/{teen}", json={"guardian_id": adult_profile}, headers=ADMIN).status_code == 422
    assert client.put("/v1/admin/guardians/mum", json={"guardian_id": "grandma"}, headers=ADMIN).status_code == 422  # guards one
    assert client.put(controls_url("mum", child), json={"daily_minutes": 10}).status_code == 200
    assert link(client, child, "mum")["effective_daily_minutes"] == 10  # an operator's second click loosens nothing
    assert client.get(controls_url("mum", child)).json()["controls"]["daily_minutes"] == 10
    assert link(client, child, "dad")["controls"]["daily_minutes"] is None  # dad's own controls: none yet
    assert client.get(controls_url("mum", child)).status_code == 404


def test_controls_stored_as_text_that_is_not_json_never_take_serving_down(daytime_client, data):
    """SQLite keeps whatever text a hand edit puts in a JSON column: every route of that minor still
    answers, with the configured rules in force; the guardian can set controls again."""
    from sqlalchemy import text

    from serving import metrics

    client, _ = daytime_client
    minor = user_of_age(data, *BANDS["12-16"])
    link(client, minor, "parent-t")
    assert client.put(controls_url("parent-t", minor), json={"daily_minutes": 5}).status_code == 200
    with client.app.state.services.store.engine.begin() as conn:
        conn.execute(text("UPDATE guardians SET controls = 'daily_minutes=5 {' WHERE minor_id = :m"), {"m": minor})
    before = metrics.UNREADABLE_READS.labels("guardian_controls")._value.get()
    assert served(client, minor).status_code == 200
    assert client.get("/v1/trending", params={"user_id": minor}).status_code == 200
    shown = client.get(controls_url("parent-t", minor))
    assert shown.status_code == 200 and shown.json()["effective_daily_minutes"] == 60  # the band's: the regulated minimum
    assert client.get(f"/v1/guardians/parent-t/minors/{minor}/usage").status_code == 200
    assert client.put(f"/v1/users/{minor}/settings", json={"minor_mode": False}).status_code == 403  # still in care
    assert metrics.UNREADABLE_READS.labels("guardian_controls")._value.get() > before
    assert client.put(controls_url("parent-t", minor), json={"daily_minutes": 5}).json()["effective_daily_minutes"] == 5


@pytest.mark.parametrize("raw", [
    '{"daily_minutes": 1e400}', '{"daily_minutes": NaN}', '{"daily_minutes": Infinity}', '{"daily_minutes": -1}',
    '{"daily_minutes": 0}', '{"daily_minutes": 1180591620717411303424}', '{"daily_minutes": "\\u0661\\u0662"}',
    '{"daily_minutes": "\\uff11\\uff12"}', '{"daily_minutes": "NaN"}', '{"max_age_rating": "\\u0668"}', '{"max_age_rating": 8.5}',
    '{"max_age_rating": true}', '{"curfew_start": "\\uff12\\uff11:00", "curfew_end": "07:00"}',
    '{"curfew_start": "21:00:00.000001", "curfew_end": "21:00"}', '{"curfew_start": "21:00", "curfew_end": "06:00:30"}',
    '{"curfew_start": "06:00", "curfew_end": "22:00"}', '{"curfew_start": "05:59", "curfew_end": "22:01"}',
    '{"curfew_start": "21:00+08:00", "curfew_end": "07:00+08:00"}', '{"curfew_start": 75600, "curfew_end": 25200}',
    '{"daily_minutes": 30, "daily_minutes": 3000}', 'null', '[]',
])
def test_hostile_control_values_are_a_clear_422_and_change_nothing(daytime_client, data, raw):
    client, _ = daytime_client
    minor = user_of_age(data, *BANDS["8-12"])
    link(client, minor, "parent-h")
    assert client.put(controls_url("parent-h", minor), json={"daily_minutes": 20, "max_age_rating": 0}).status_code == 200
    response = client.put(controls_url("parent-h", minor), content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"], (raw, response.text)
    body = client.get(controls_url("parent-h", minor)).json()
    assert body["effective_daily_minutes"] == 20 and body["effective_max_age_rating"] == 0
    assert body["curfews"] == ["22:00-06:00"]


ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)).map(lambda d: d.replace(tzinfo=UTC)),
    zone=st.sampled_from(ZONES),
    configured=st.tuples(times, times).filter(lambda w: w[0] != w[1]),
    window=st.one_of(st.none(), st.tuples(times, times).filter(lambda w: w[0] != w[1])),
    used=st.floats(0, 200 * 60),
    daily=st.one_of(st.none(), st.integers(1, 24 * 60)),
)
def test_guardian_controls_never_loosen_a_rule_in_any_time_zone(moment, zone, configured, window, used, daily):
    """Any configured curfew, any zone (daylight saving days included), any guardian window that
    overlaps, wraps or nests in it: the guardian never opens a minute the configured rules close,
    and a refusal's retry time lies outside every window in force."""
    config = minors.MinorsConfig(time_zone=zone, curfew_start=configured[0], curfew_end=configured[1])
    controls = minors.GuardianControls(daily_minutes=daily, curfew_start=window[0] if window else None,
                                       curfew_end=window[1] if window else None)
    assume(minors.curfews_leave_time(config, controls))
    usage = minors.UsageState(day=minors.local_day(moment, config), last_activity=moment, seconds_used=used)
    plain = minors.check_access(moment, 10, True, usage, config)
    guarded = minors.check_access(moment, 10, True, usage, config, controls)
    assert not guarded.allowed or plain.allowed
    if not guarded.allowed:
        assert 1 <= guarded.retry_after_seconds <= 2 * 86400
        if guarded.code == "minors_curfew":
            resume = moment + timedelta(seconds=guarded.retry_after_seconds)
            assert not any(minors.in_curfew(resume, config, w) for w in minors.curfews(config, controls)), resume
