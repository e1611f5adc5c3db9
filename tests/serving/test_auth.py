"""User authentication (serving/auth.py): user A cannot read or change user B's state through any
route. The sweep reuses the gate test's table of one request per user-facing operation, so a new
route that names a user is covered as soon as it exists (the table test fails until it is added)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from serving.auth import AuthConfig, gateway_signature
from tests.conftest import ADMIN
from tests.serving.test_gate import requests_for, user_operations

SECRET = "a-test-secret-of-32-bytes-or-more!!"
NAMES_NO_USER = {("get", "/v1/transparency"), ("get", "/transparency")}


@pytest.fixture(scope="module")
def two_adults(data) -> tuple[str, str]:
    users = data.users.filter(pl.col("age") >= 30)["user_id"].sort().to_list()
    return users[0], users[1]


def token(sub: str, key=SECRET, algorithm="HS256", **claims) -> dict[str, str]:
    headers = {"kid": claims.pop("kid")} if "kid" in claims else None
    payload = {"sub": sub, "aud": "recsys", "exp": int(time.time()) + 300, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, key, algorithm=algorithm, headers=headers)}"}


def hs256_forgery(payload: dict, secret: bytes, kid: str) -> str:
    """A token PyJWT refuses to make: HMAC over the header and payload with `secret`."""
    segment = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")  # noqa: E731
    signing = segment({"alg": "HS256", "typ": "JWT", "kid": kid}) + b"." + segment(payload)
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing, hashlib.sha256).digest()).rstrip(b"=")
    return (signing + b"." + signature).decode()


def call(client, spec: dict, method: str, path: str, headers: dict):
    spec = dict(spec)
    url = spec.pop("url", path)
    return client.request(method.upper(), url, headers=headers, **spec)


@pytest.fixture
def jwt_client(client_factory):
    return client_factory(auth=AuthConfig(mode="jwt", jwt_secret=SECRET))


def test_user_a_cannot_act_as_user_b_on_any_route(jwt_client, two_adults, trained):
    a, b = two_adults
    bundle, _ = trained
    item = str(bundle.items["item_id"][0])
    served_b = jwt_client.post("/v1/recommendations", json={"user_id": b}, headers=token(b))
    assert served_b.status_code == 200, served_b.text
    table = requests_for(jwt_client, b, served_b.json()["request_id"], item)
    checked = 0
    for method, path in user_operations(jwt_client):
        if (method, path) in NAMES_NO_USER or path.startswith("/me"):
            continue  # the privacy center's pages authenticate with their own session (tests/web/test_pages.py)
        spec = table[(method, path)]
        # guardian routes name the guardian's account (the sweep's guardian of b is g-b)
        owner = f"g-{b}" if "{guardian_id}" in path else b
        as_a = call(jwt_client, spec, method, path, token(a))
        assert as_a.status_code == 403, (method, path, as_a.status_code, as_a.text)
        assert as_a.headers["x-request-id"] and as_a.headers["x-algorithm-filing-number"]
        anonymous = call(jwt_client, spec, method, path, {})
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        as_b = call(jwt_client, spec, method, path, token(owner))
        assert as_b.status_code not in (401, 403), (method, path, as_b.text)
        checked += 1
    assert checked >= 10
    settings_b = jwt_client.get(f"/v1/users/{b}/settings", headers=token(b)).json()
    assert settings_b["personalization"] is True  # A's attempt to switch it off changed nothing


@pytest.mark.parametrize("bad", [
    {"exp": int(time.time()) - 3600},
    {"aud": "another-service"},
    {"key": "not-the-secret-but-long-enough-too!!"},
    {"sub": ""},
    {"algorithm": "none"},
])
def test_a_bad_token_is_refused(jwt_client, two_adults, bad):
    a, _ = two_adults
    bad = dict(bad)
    key, algorithm = bad.pop("key", SECRET), bad.pop("algorithm", "HS256")
    sub = bad.pop("sub", a)
    headers = token(sub, key=None if algorithm == "none" else key, algorithm=algorithm, **bad)
    response = jwt_client.post("/v1/recommendations", json={"user_id": a}, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["detail"].startswith("invalid token")


def test_events_of_many_users_need_the_admin_token(jwt_client, two_adults, trained):
    a, b = two_adults
    bundle, _ = trained
    now = jwt_client.app.state.services.clock().isoformat()
    events = [{"event_id": f"ev-{u}", "user_id": u, "item_id": str(bundle.items["item_id"][1]), "type": "click", "ts": now}
              for u in (a, b)]
    assert jwt_client.post("/v1/events", json={"events": events}, headers=token(a)).status_code == 403
    assert jwt_client.post("/v1/events", json={"events": events[:1]}, headers=token(a)).status_code == 200
    assert jwt_client.post("/v1/events", json={"events": events}, headers=ADMIN).json()["accepted"] == 1


def test_jwks_file_with_rsa_keys(client_factory, two_adults, tmp_path):
    a, b = two_adults
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public_jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    client = client_factory(auth=AuthConfig(mode="jwt", jwks_file=jwks, issuer="https://id.example"))
    good = token(a, key=pem, algorithm="RS256", kid="k1", iss="https://id.example")
    assert client.get(f"/v1/users/{a}/settings", headers=good).status_code == 200
    assert client.get(f"/v1/users/{b}/settings", headers=good).status_code == 403
    wrong_issuer = token(a, key=pem, algorithm="RS256", kid="k1", iss="https://evil.example")
    assert client.get(f"/v1/users/{a}/settings", headers=wrong_issuer).status_code == 401
    # the classic confusion: HS256 "signed" with the public key as the secret
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = hs256_forgery({"sub": a, "aud": "recsys", "iss": "https://id.example", "exp": int(time.time()) + 300},
                           public_pem, kid="k1")
    assert client.get(f"/v1/users/{a}/settings", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_gateway_mode(client_factory, two_adults):
    a, b = two_adults
    client = client_factory(auth=AuthConfig(mode="gateway", gateway_secret="gateway-shared-secret"))
    at = str(int(time.time()))

    def gateway(user, at=at, secret="gateway-shared-secret"):
        return {"X-Authenticated-User": user, "X-Authenticated-At": at,
                "X-Authenticated-Signature": gateway_signature(secret, user, at)}

    assert client.get(f"/v1/users/{a}/tags", headers=gateway(a)).status_code == 200
    assert client.get(f"/v1/users/{a}/tags", headers=gateway(b)).status_code == 403
    assert client.get(f"/v1/users/{a}/tags", headers=gateway(a, secret="guess")).status_code == 401
    assert client.get(f"/v1/users/{a}/tags", headers=gateway(a, at=str(int(time.time()) - 3600))).status_code == 401
    assert client.get(f"/v1/users/{a}/tags").status_code == 401


def test_jwt_mode_without_a_key_refuses_to_build_the_app(make_settings):
    from serving.app import create_app

    with pytest.raises(ValueError, match="needs exactly one of jwt_secret"):
        create_app(make_settings(auth=AuthConfig(mode="jwt")))


def test_recsys_serve_refuses_to_start_without_a_key(model_env):
    import subprocess

    from tests.conftest import RECSYS, free_port

    env = {**model_env, "RECSYS_AUTH__MODE": "jwt"}
    result = subprocess.run([RECSYS, "serve", "--port", str(free_port())], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "auth: mode 'jwt' needs exactly one of jwt_secret" in result.stderr
