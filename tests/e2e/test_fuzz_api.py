"""The API fuzzer over a real server: Schemathesis generates requests for every operation of the
OpenAPI schema (valid and invalid, with the admin token), against `recsys serve` on a real
socket. Every response must be a non-5xx, match its documented schema, and carry the request id
and filing number headers; afterwards the server still serves lists. Then a hand-made list of
hostile requests (huge and negative numbers, 10k-character and unicode/NUL ids, wrong types,
invalid JSON, 5 MB bodies, unknown fields) gets the same checks."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import ADMIN, Server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_server(model_env, tmp_path_factory):
    server = Server(model_env, 1, tmp_path_factory.mktemp("fuzz")).start()
    yield server
    server.stop()


def assert_headers(response) -> None:
    def header(name: str):
        value = response.headers.get(name)
        return value[0] if isinstance(value, list) else value  # Schemathesis keeps every value of a header

    assert header("x-request-id"), (response.status_code, response.text[:200])
    assert header("x-algorithm-filing-number") == "TEST-FILING-0001"


# ~2,000 calls: the suite's 300 s hang guard is too close on a shared 2-core machine (seen at 300 s under a load of 12)
@pytest.mark.timeout(1200)
def test_fuzzed_requests_get_no_5xx_and_match_the_schema(live_server):
    """Every operation, valid (positive) and invalid (negative) inputs, bounded examples each.
    (Driven through Schemathesis' strategies: its pytest plugin does not support pytest 9.)"""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    labels = {operation.label for operation in operations}
    assert NEW_USER_ROUTES | SESSION_ROUTES <= labels, f"not fuzzed: {(NEW_USER_ROUTES | SESSION_ROUTES) - labels}"
    failures: list[str] = []
    calls = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode))
            def fuzz(case):
                nonlocal calls
                calls += 1
                response = case.call(headers=ADMIN, timeout=30)
                try:
                    assert_headers(response)
                    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                except Exception as failure:  # an assertion, or Schemathesis' group of failed checks
                    failures.append(f"{operation.label} ({mode.value}): {str(failure)[:400]}")

            try:
                fuzz()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing in it can be made invalid
    assert calls > 200
    assert not failures, "\n".join(failures[:20])


# The routes added with guardian controls and feedback: the fuzzer must reach them (the schema lists them)
NEW_USER_ROUTES = {
    "PUT /v1/admin/guardians/{minor_id}", "GET /v1/guardians/{guardian_id}/minors/{minor_id}/controls",
    "PUT /v1/guardians/{guardian_id}/minors/{minor_id}/controls", "GET /v1/guardians/{guardian_id}/minors/{minor_id}/usage",
    "POST /v1/users/{user_id}/feedback", "GET /v1/users/{user_id}/feedback", "DELETE /v1/users/{user_id}/feedback/{item_id}",
    "GET /v1/users/{user_id}/history", "DELETE /v1/users/{user_id}/history",
}
# The routes of server-side sessions and operator tokens: the fuzzer must reach them too
SESSION_ROUTES = {"POST /v1/admin/login", "GET /v1/admin/whoami", "POST /me/login", "POST /me/logout",
                  "POST /console/login", "POST /console/logout"}
JSON = {"content-type": "application/json"}

HOSTILE = [
    ("GET", "/v1/users/1/history", {"params": {"limit": 10**30}}),
    ("GET", "/v1/users/1/history", {"params": {"before": "9" * 20 + ":e"}}),
    ("GET", "/v1/users/1/history", {"params": {"before": "1:" + "\u0000"}}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "1", "k": 10**30}}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "1", "page": -(10**18)}}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "x" * 10_000}}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "用户\u0000"}}),
    ("POST", "/v1/recommendations", {"json": {"user_id": ["1"], "k": "10"}}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "1", "surface": None, "page": 1.5}}),
    ("POST", "/v1/recommendations", {"content": b"{\"user_id\": ", "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/recommendations", {"content": b"\xff\xfe\x00", "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/recommendations", {"content": b"x" * (5 * 1024 * 1024), "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "1", "unknown": {"deep": [1, 2, 3]}}}),
    ("POST", "/v1/recommendations", {"json": [{"user_id": "1"}]}),
    ("POST", "/v1/recommendations", {"json": {"user_id": "1", "session_id": "../../etc/passwd"}}),
    ("GET", "/v1/recommendations/" + "9" * 10_000, {"params": {"user_id": "1"}}),
    ("GET", "/v1/recommendations/%00", {"params": {"user_id": "1"}}),
    ("GET", "/v1/recommendations/ffffffff-ffff-7fff-bfff-ffffffffffff", {"params": {"user_id": "1"}}),
    ("GET", "/v1/trending", {"params": {"user_id": "1", "k": "-1"}}),
    ("GET", "/v1/trending", {"params": {"user_id": "\u202e1", "k": str(2**70)}}),
    ("GET", "/v1/users/" + "u" * 10_000 + "/settings", {}),
    ("PUT", "/v1/users/1/settings", {"json": {"personalization": "maybe"}}),
    ("PUT", "/v1/users/1/settings", {"json": {}}),
    ("POST", "/v1/users/1/tags", {"json": {"tag": "\u0000" * 64}}),
    ("DELETE", "/v1/users/1/tags/" + "%F0%9F%92%A9" * 40, {}),
    ("POST", "/v1/events", {"json": {"events": [{"event_id": "e", "user_id": "1", "item_id": "1", "type": "like",
                                                 "ts": "99999-01-01T00:00:00Z"}]}}),
    ("POST", "/v1/events", {"json": {"events": [{"event_id": "e", "user_id": "1", "item_id": "1", "type": "like",
                                                 "ts": "2026-01-01T00:00:00"}]}}),
    ("POST", "/v1/events", {"json": {"events": []}}),
    ("POST", "/v1/complaints", {"json": {"user_id": "1", "kind": "complaint", "subject_type": "item",
                                         "subject_id": "x" * 5000, "text": "t" * 100_000}}),
    ("GET", "/v1/complaints/" + "z" * 10_000, {"params": {"user_id": "1"}}),
    ("POST", "/v1/admin/interventions", {"json": {"kind": "pin", "surface": "home", "item_id": "1", "position": 10**20,
                                                  "reason": "xyz"}}),
    ("POST", "/v1/admin/interventions", {"json": {"kind": "boost", "category": "x" * 200, "factor": float("1e308"),
                                                  "reason": "xyz"}}),
    ("POST", "/v1/admin/interventions", {"json": {"kind": "block", "item_id": "1", "reason": "xyz", "ttl_seconds": -5}}),
    ("DELETE", "/v1/admin/interventions/99999999999999999999999", {}),
    ("DELETE", "/v1/admin/interventions/-1", {}),
    ("POST", "/v1/admin/features", {"json": {"kind": "regex", "pattern": "(a+)+$" * 40, "category": "spam"}}),
    ("POST", "/v1/admin/features", {"json": {"kind": "regex", "pattern": "(", "category": "spam"}}),
    ("POST", "/v1/admin/complaints/" + "q" * 5000 + "/resolve", {"json": {"status": "resolved", "resolution": "ok"}}),
    ("GET", "/v1/admin/complaints", {"params": {"status": "' OR 1=1 --"}}),
    ("POST", "/v1/admin/login", {"json": {"name": "x" * 5000, "password": "p"}}),
    ("POST", "/v1/admin/interventions/1/approve", {"json": {"reason": ""}}),
    ("POST", "/v1/admin/interventions/99999999999999999999999/reject", {"json": {"reason": "xyz"}}),
    # guardian controls and feedback (the guardian link refuses an account as its own guardian)
    ("PUT", "/v1/admin/guardians/1", {"json": {"guardian_id": "1"}}),
    ("PUT", "/v1/admin/guardians/1", {"json": {"guardian_id": "g\u0000"}}),
    ("PUT", "/v1/guardians/g1/minors/1/controls", {"content": b'{"daily_minutes": NaN}', "headers": JSON}),
    ("PUT", "/v1/guardians/g1/minors/1/controls", {"content": b'{"daily_minutes": 1e400}', "headers": JSON}),
    ("PUT", "/v1/guardians/g1/minors/1/controls", {"json": {"daily_minutes": "\u0661\u0662"}}),
    ("PUT", "/v1/guardians/g1/minors/1/controls", {"json": {"daily_minutes": -(2**70)}}),
    ("PUT", "/v1/guardians/g1/minors/1/controls", {"json": {"curfew_start": "21:00:00.000001", "curfew_end": "21:00"}}),
    ("PUT", "/v1/guardians/g1/minors/1/controls", {"json": {"curfew_start": "\uff12\uff11:00", "curfew_end": "07:00"}}),
    ("PUT", "/v1/guardians/g1/minors/1/controls", {"json": {"max_age_rating": "\u0668"}}),
    ("GET", "/v1/guardians/" + "g" * 5000 + "/minors/1/usage", {}),
    ("POST", "/v1/users/1/feedback", {"json": {"request_id": "ffffffff-ffff-7fff-bfff-ffffffffffff", "item_id": "1",
                                               "kind": "not_interested"}}),
    ("POST", "/v1/users/1/feedback", {"json": {"request_id": "0190d0a8-0000-4000-8000-000000000000", "item_id": "1",
                                               "kind": "not_interested"}}),
    ("POST", "/v1/users/1/feedback", {"json": {"request_id": "0190d0a8-0000-7000-8000-000000000000", "item_id": "x" * 5000,
                                               "kind": "fewer_like_this"}}),
    ("DELETE", "/v1/users/1/feedback/" + "%F0%9F%92%A9" * 40, {}),
    # the pages' forms: without the session's CSRF token, whatever the body, a 403
    ("POST", "/console/login", {"data": {"name": "x" * 10_000, "password": "\u0000"}}),
    ("POST", "/console/interventions", {"content": b"\xff\xfe\x00", "headers": {"content-type": "multipart/form-data; boundary=b"}}),
    ("POST", "/console/interventions/1/approve", {"data": {f"field{i}": "v" for i in range(500)}}),
    ("POST", "/me/login", {"data": {"user_id": "用户\u0000", "csrf_token": "forged"}}),
    ("POST", "/me/settings", {"json": {"personalization": False}}),
    ("POST", "/me/tags/" + "%F0%9F%92%A9" * 40 + "/delete", {}),
    ("POST", "/console/interventions/99999999999999999999999/approve", {}),
    # operator tokens that are not ours: too long, unsigned, signed for another purpose (a page cookie's shape)
    ("GET", "/v1/admin/whoami", {"headers": {"Authorization": "Bearer op1." + "a" * 600}}),
    ("GET", "/v1/admin/whoami", {"headers": {"Authorization": "Bearer op1.WyJyb290IiwiMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwIl0.aaaa.bbbb"}}),
    ("GET", "/v1/admin/whoami", {"headers": {"Authorization": "Bearer op1."}}),
    ("GET", "/v1/admin/whoami", {"headers": {"Authorization": "Basic " + "b" * 100}}),
    # an event dated beyond the clock skew the server allows
    ("POST", "/v1/events", {"json": {"events": [{"event_id": "ahead", "user_id": "1", "item_id": "1", "type": "click",
                                                 "ts": "2999-01-01T00:00:00Z"}]}}),
    ("PATCH", "/v1/recommendations", {}),
    ("GET", "/nowhere/" + "a" * 5000, {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), HOSTILE, ids=[f"{m} {p[:40]}" for m, p, _ in HOSTILE])
def test_hostile_requests_get_a_clear_4xx(live_server, method, path, kwargs):
    kwargs = dict(kwargs)
    headers = {**ADMIN, **kwargs.pop("headers", {})} if "/admin/" in path else kwargs.pop("headers", {})
    response = httpx.request(method, live_server.url + path, headers=headers, timeout=30, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert_headers(response)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


def test_the_server_still_serves_lists_after_the_fuzzing(live_server, trained):
    bundle, _ = trained
    user = str(bundle.user_ids[0])
    for surface in ("home", "feed", "related", "trending"):
        response = httpx.post(f"{live_server.url}/v1/recommendations", json={"user_id": user, "surface": surface}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["items"]
    assert httpx.get(f"{live_server.url}/readyz", timeout=10).json()["unreadable_records"] == {}
