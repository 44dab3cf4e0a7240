"""Authentication, CORS, 405s, body and rate limits of the gateway, over the real
predictor, feature service and Redis of this package (``conftest.served``).

Protected routes are found by walking the app's routes, so a mutating route added
without protection fails :func:`test_every_mutating_route_is_protected`, and every
protected route is exercised by the accept/reject tests without being listed here.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from tests.conftest import free_ports
from tests.fake_http import Recorded, serve_json
from tests.gateway.conftest import VEHICLE
from tests.predictor.conftest import Served
from vroom_common.http import server_config
from vroom_gateway.app import create_app
from vroom_gateway.settings import GatewaySettings

KEY = "k-" + "a" * 30
OTHER_KEY = "k-" + "b" * 30
WRONG_KEY = "k-" + "c" * 30
#: POSTs that read: predictions stay open unless ``auth_reads`` closes them too.
OPEN_POSTS = {"/predict", "/predict/id", "/predict/batch"}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


#: What a page's fetch asks to send: a JSON body, a key, its trace context.
REQUESTED_HEADERS = "content-type, authorization, traceparent"


def operations(settings: GatewaySettings) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) of every operation in the app's OpenAPI."""
    paths = create_app(settings).openapi()["paths"]
    return [
        (method.upper(), path, operation)
        for path, item in paths.items()
        for method, operation in item.items()
    ]


def protected(settings: GatewaySettings) -> list[tuple[str, str]]:
    """(method, path) of every operation that authenticates its caller: FastAPI lists
    the bearer / X-API-Key schemes of ``authenticate`` on exactly those."""
    return [(method, path) for method, path, op in operations(settings) if op.get("security")]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "424242", path)


@dataclass
class FakeAirflow:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture(scope="module")
def airflow() -> Iterator[FakeAirflow]:
    """Airflow's REST API: /train and /materialize trigger DAG runs here, with no side
    effect on this package's stack."""

    def respond(request: Recorded) -> tuple[int, Any]:
        return 200, {"dag_run_id": request.body["dag_run_id"], "state": "queued"}

    with serve_json(FakeAirflow(), respond) as fake:
        yield fake


def secured(served: Served, airflow: FakeAirflow, **overrides: Any) -> GatewaySettings:
    return served.settings.with_overrides(
        api_keys=[KEY, OTHER_KEY],
        airflow_url=airflow.url,
        rollout_backend="none",  # /reload answers "unchanged" without touching the predictor
        rate_limit_costly="",
        rate_limit_benchmark="",
        **overrides,
    )


def test_every_mutating_route_is_protected(served: Served) -> None:
    unprotected = [
        f"{method} {path}"
        for method, path, operation in operations(served.settings)
        if method in MUTATING and path not in OPEN_POSTS and not operation.get("security")
    ]
    assert unprotected == []
    names = {f"{method} {path}" for method, path in protected(served.settings)}
    assert {
        "POST /vehicles",
        "DELETE /vehicles/{vehicle_id}",
        "POST /reload",
        "POST /train",
        "POST /materialize",
        "POST /benchmark",
        "POST /benchmark/id",
        "POST /rollout",
        "POST /rollout/abort",
        "POST /rollout/promote",
    } <= names
    # Reads and predictions are open by default.
    assert not [
        (method, path)
        for method, path in protected(served.settings)
        if path in OPEN_POSTS or method == "GET"
    ]


def test_auth_reads_closes_predictions_and_reads_but_not_health(served: Served) -> None:
    settings = served.settings.with_overrides(api_keys=[KEY], auth_reads=True)
    names = {f"{method} {path}" for method, path in protected(settings)}
    assert {"POST /predict", "GET /vehicles", "GET /stores", "GET /events"} <= names
    assert "GET /health" not in names
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", json=VEHICLE).status_code == 401
        assert client.get("/vehicles").status_code == 401
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/metrics").status_code == 200
        answered = client.post("/predict", json=VEHICLE, headers={"X-API-Key": KEY})
        assert answered.status_code == 200, answered.text


def test_every_protected_route_rejects_missing_and_wrong_keys(
    served: Served, airflow: FakeAirflow
) -> None:
    settings = secured(served, airflow)
    routes = protected(settings)
    assert len(routes) >= 10
    with TestClient(create_app(settings)) as client:
        for method, path in routes:
            url = concrete(path)
            missing = client.request(method, url, json={})
            assert missing.status_code == 401, (method, path, missing.text)
            assert missing.headers["WWW-Authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in missing.json()["detail"]
            for headers in (
                {"Authorization": f"Bearer {WRONG_KEY}"},
                {"X-API-Key": WRONG_KEY},
            ):
                wrong = client.request(method, url, json={}, headers=headers)
                assert wrong.status_code == 403, (method, path, headers, wrong.text)
                assert wrong.json() == {"detail": "the API key is not valid"}
            basic = client.request(method, url, json={}, headers={"Authorization": "Basic eDp5"})
            assert basic.status_code == 401, (method, path)


#: A request to each protected route that is cheap and leaves the stack as it was once
#: authenticated, and the status it must get (anything but 401/403 proves the key).
ACCEPTED = {
    ("POST", "/vehicles"): ({"technology": "yes"}, 422),
    ("DELETE", "/vehicles/{vehicle_id}"): (None, 404),
    ("POST", "/reload"): (None, 200),
    ("POST", "/train"): (None, 200),
    ("POST", "/materialize"): (None, 200),
    ("POST", "/benchmark"): ({"vehicle": VEHICLE, "n_iterations": 2}, 200),
    ("POST", "/benchmark/id"): ({"vehicle_id": 1, "n_iterations": 2}, 200),
    ("POST", "/rollout"): ({"version": 7}, 422),
    ("POST", "/rollout/abort"): ({"reason": 5}, 422),
}


def test_right_keys_are_accepted_as_bearer_or_header(served: Served, airflow: FakeAirflow) -> None:
    settings = secured(served, airflow)
    # /rollout/promote waits for a controller (none runs here): the e2e stack's tests
    # call it with the key.
    routes = [route for route in protected(settings) if route != ("POST", "/rollout/promote")]
    assert set(routes) == set(ACCEPTED)
    with TestClient(create_app(settings)) as client:
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": OTHER_KEY}):
            for method, path in routes:
                body, expected = ACCEPTED[(method, path)]
                answer = client.request(method, concrete(path), json=body, headers=headers)
                assert answer.status_code == expected, (method, path, answer.text)
    triggered = [request.path for request in airflow.requests]
    assert "/api/v1/dags/vroom_forecast_pipeline/dagRuns" in triggered


def test_keys_rotate_through_the_key_directory(
    served: Served, airflow: FakeAirflow, tmp_path: Path
) -> None:
    """A mounted Secret: one file per key. Adding the new key, moving clients, then
    removing the old one never leaves a moment without a valid key."""
    secret = tmp_path / "api-keys"
    secret.mkdir()
    (secret / "old").write_text(KEY + "\n")
    settings = secured(served, airflow).with_overrides(api_keys=[], api_keys_file=secret)
    with TestClient(create_app(settings)) as client:

        def status(key: str) -> int:
            return client.post("/reload", headers={"X-API-Key": key}).status_code

        assert (status(KEY), status(OTHER_KEY)) == (200, 403)
        (secret / "new").write_text(OTHER_KEY)
        deadline = time.monotonic() + 5
        while status(OTHER_KEY) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (status(KEY), status(OTHER_KEY)) == (200, 200)
        (secret / "old").unlink()
        deadline = time.monotonic() + 5
        while status(KEY) != 403 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (status(KEY), status(OTHER_KEY)) == (403, 200)
        # A broken file keeps the last good keys.
        (secret / "bad").write_text("short")
        time.sleep(1.2)
        assert status(OTHER_KEY) == 200


def test_keys_are_never_logged_or_kept_in_clear(
    served: Served, airflow: FakeAirflow, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = secured(served, airflow)
    app = create_app(settings)
    with TestClient(app) as client:
        client.post("/reload", headers={"Authorization": f"Bearer {KEY}"})
        client.post("/reload", headers={"Authorization": f"Bearer {WRONG_KEY}"})
        ring = app.state.resources.authenticator.keys
        held = {bytes(d) for d in (*ring._fixed, *ring._from_file)}
    assert held == {hashlib.sha256(k.encode()).digest() for k in (KEY, OTHER_KEY)}
    out = capsys.readouterr()
    assert KEY not in out.out + out.err
    assert WRONG_KEY not in out.out + out.err
    assert KEY not in repr(settings)


def test_a_short_key_refuses_to_start(served: Served, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# rotated 2026-12\nshort\n")
    with pytest.raises(ValueError, match=r"key #1 is shorter than 16 characters"):
        create_app(served.settings.with_overrides(api_keys_file=keys))


# --- CORS, 405 -----------------------------------------------------------------------------

ORIGIN = "http://localhost:3000"


def test_default_origins_pass_preflights_and_see_the_request_id(served: Served) -> None:
    with TestClient(create_app(served.settings)) as client:
        for origin in (ORIGIN, "http://127.0.0.1:3000"):
            for method, path in (("POST", "/vehicles"), ("DELETE", "/vehicles/1")):
                preflight = client.options(
                    path,
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": method,
                        "Access-Control-Request-Headers": REQUESTED_HEADERS,
                    },
                )
                assert preflight.status_code == 200, preflight.text
                assert preflight.headers["access-control-allow-origin"] == origin
                assert method in preflight.headers["access-control-allow-methods"]
                allowed = preflight.headers["access-control-allow-headers"].lower()
                assert "content-type" in allowed
                assert "authorization" in allowed
                assert "traceparent" in allowed  # a traced page's requests join its trace
                assert "access-control-allow-credentials" not in preflight.headers
        simple = client.get("/health", headers={"Origin": ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_other_origins_are_refused(served: Served) -> None:
    with TestClient(create_app(served.settings)) as client:
        preflight = client.options(
            "/vehicles",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 400
        simple = client.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


def test_wildcard_origin_only_when_configured(served: Served) -> None:
    with TestClient(create_app(served.settings.with_overrides(cors_origins=["*"]))) as client:
        simple = client.get("/health", headers={"Origin": "http://anywhere.example"})
        assert simple.headers["access-control-allow-origin"] == "*"
    with pytest.raises(ValueError, match="cannot be combined with cors_allow_credentials"):
        served.settings.with_overrides(cors_origins=["*"], cors_allow_credentials=True)


def test_errors_carry_cors_headers(served: Served, airflow: FakeAirflow) -> None:
    """A browser can read why it was refused (401, 413, 422) only with CORS headers."""
    with TestClient(create_app(secured(served, airflow, max_body_bytes=2048))) as client:
        refused = client.post("/reload", headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
        too_big = client.post(
            "/predict/batch", content=b"[" + b" " * 4096 + b"]", headers={"Origin": ORIGIN}
        )
        assert too_big.status_code == 413
        assert too_big.headers["access-control-allow-origin"] == ORIGIN


def test_options_that_is_not_a_preflight_lists_the_real_methods(served: Served) -> None:
    with TestClient(create_app(served.settings)) as client:
        for path, methods in (
            ("/vehicles", "GET, POST"),
            ("/vehicles/5", "DELETE"),
            ("/rollout", "GET, POST"),
            ("/predict", "POST"),
        ):
            answer = client.options(path)
            assert answer.status_code == 405, path
            assert answer.headers["Allow"] == methods, path
            assert methods in answer.json()["detail"]
        put = client.put("/vehicles", json={})
        assert (put.status_code, put.headers["Allow"]) == (405, "GET, POST")


# --- types ------------------------------------------------------------------------------------


def test_unknown_fields_are_ignored_and_wrong_types_refused(served: Served) -> None:
    with TestClient(create_app(served.settings)) as client:
        extra = client.post("/predict", json={**VEHICLE, "colour": "red", "id": 3})
        assert extra.status_code == 200, extra.text
        cases = {
            "description": False,
            "technology": True,
            "actual_price": "67.85",
            "num_images": 5.5,
            "street_parked": "0",
            "recommended_price": None,
        }
        for name, value in cases.items():
            answer = client.post("/predict", json={**VEHICLE, name: value})
            assert answer.status_code == 422, (name, value)
            (error,) = answer.json()["detail"]
            assert error["loc"] == ["body", name], (name, error)
        by_id = client.post("/predict/id", json={"vehicle_id": "1"})
        assert by_id.status_code == 422
        assert by_id.json()["detail"][0]["loc"] == ["body", "vehicle_id"]
        assert client.post("/predict/id", json={"vehicle_id": True}).status_code == 422
        assert client.post("/predict/id", json={"vehicle_id": 1, "x": 1}).status_code == 200


# --- limits -----------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_413_naming_the_limit(served: Served) -> None:
    with TestClient(create_app(served.settings.with_overrides(max_body_bytes=4096))) as client:
        batch = [VEHICLE] * 100  # ~14 kB
        answer = client.post("/predict/batch", json=batch)
        assert answer.status_code == 413
        assert answer.json() == {"detail": "request body: larger than the limit of 4096 bytes"}

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            yield b"["
            for _ in range(300):  # 5.4 kB
                yield b'{"technology": 1},'
            yield b"{}]"

        streamed = client.post(
            "/predict/batch", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        small = client.post("/predict/batch", json=[VEHICLE] * 3)
        assert small.status_code == 200, small.text
        assert len(small.json()["predictions"]) == 3


def test_rate_limit_is_shared_by_gateways_and_says_when_to_retry(
    served: Served, airflow: FakeAirflow
) -> None:
    """Two gateway apps on one Redis: the limit counts the caller's requests to both."""
    # Keys of this run only: the counters live in Redis for a minute.
    key, other_key = (f"rl-{uuid.uuid4().hex}" for _ in range(2))
    settings = secured(served, airflow).with_overrides(
        api_keys=[key, other_key], rate_limit_costly="3/minute"
    )
    headers = {"X-API-Key": key}
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        statuses = [
            client.post("/reload", headers=headers).status_code for client in (one, two, one)
        ]
        assert statuses == [200, 200, 200]
        limited = two.post("/reload", headers=headers)
        assert limited.status_code == 429, limited.text
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert "rate limit of 3 per 1 minute" in limited.json()["detail"]
        # Another caller has its own budget.
        other = one.post("/reload", headers={"X-API-Key": other_key})
        assert other.status_code == 200


def test_one_benchmark_at_a_time_per_gateway(served: Served, airflow: FakeAirflow) -> None:
    settings = secured(served, airflow, benchmark_budget_s=1.5)
    body = {"vehicle": VEHICLE, "n_iterations": 100_000}
    with TestClient(create_app(settings)) as client:
        first: list[int] = []
        running = threading.Thread(
            target=lambda: first.append(
                client.post("/benchmark", json=body, headers={"X-API-Key": KEY}).status_code
            )
        )
        running.start()
        time.sleep(0.4)
        second = client.post("/benchmark/id", json={"vehicle_id": 1}, headers={"X-API-Key": KEY})
        running.join(10)
        assert first == [200]
        assert second.status_code == 429, second.text
        assert second.headers["Retry-After"] == "2"
        assert "already running" in second.json()["detail"]
        again = client.post(
            "/benchmark/id", json={"vehicle_id": 1, "n_iterations": 3}, headers={"X-API-Key": KEY}
        )
        assert again.status_code == 200


# --- slow clients (a real server) ------------------------------------------------------------


@pytest.fixture
def server(served: Served) -> Iterator[GatewaySettings]:
    """The gateway under uvicorn as ``serve`` runs it, with short client deadlines."""
    (port,) = free_ports(1)
    settings = served.settings.with_overrides(
        gateway_port=port, http_header_timeout_s=0.5, http_body_timeout_s=0.5
    )
    instance = uvicorn.Server(server_config(create_app(settings), settings, port))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started
    try:
        yield settings
    finally:
        instance.should_exit = True
        thread.join(10)


def _closed_after(sock: socket.socket, limit_s: float) -> tuple[float, bytes]:
    started = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return time.monotonic() - started, received


def test_a_client_that_sends_nothing_is_cut_off(server: GatewaySettings) -> None:
    with socket.create_connection((server.host, server.gateway_port)) as sock:
        waited, received = _closed_after(sock, 5)
    assert 0.3 < waited < 2.0
    assert received == b""


def test_a_client_that_dribbles_its_headers_is_cut_off(server: GatewaySettings) -> None:
    with socket.create_connection((server.host, server.gateway_port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        cut_off = None
        for _ in range(40):
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:  # reset or broken pipe once the server closed it
                cut_off = time.monotonic() - started
                break
            time.sleep(0.1)
        assert cut_off is not None
        assert cut_off < 2.5


def test_a_slow_body_is_408_and_a_good_request_still_works(server: GatewaySettings) -> None:
    with socket.create_connection((server.host, server.gateway_port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n{"
        )
        _, received = _closed_after(sock, 5)
    assert received.startswith(b"HTTP/1.1 408"), received
    assert b"not received within 0.5 s" in received
    ok = httpx.post(f"http://{server.host}:{server.gateway_port}/predict", json=VEHICLE)
    assert ok.status_code == 200, ok.text


# --- OIDC -------------------------------------------------------------------------------------


@dataclass
class FakeIssuer:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[FakeIssuer, Any]]:
    """An OIDC issuer: a discovery document and a JWKS with one RSA key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="key-1", use="sig", alg="RS256")
    fake = FakeIssuer()

    def respond(request: Recorded) -> tuple[int, Any]:
        if request.path == "/.well-known/openid-configuration":
            return 200, {"issuer": fake.url, "jwks_uri": f"{fake.url}/jwks"}
        if request.path == "/jwks":
            return 200, {"keys": [jwk]}
        return 404, {}

    with serve_json(fake, respond) as running:
        yield running, private


def _token(issuer: str, private: Any, **claims: Any) -> str:
    body = {"iss": issuer, "sub": "svc-dashboard", "aud": "vroom", "exp": time.time() + 60}
    body.update(claims)
    return jwt.encode(body, private, algorithm="RS256", headers={"kid": "key-1"})


def test_jwts_from_the_oidc_issuer(
    served: Served, airflow: FakeAirflow, issuer: tuple[FakeIssuer, Any]
) -> None:
    fake, private = issuer
    settings = secured(served, airflow, oidc_issuer=fake.url, oidc_audience="vroom")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "valid": (_token(fake.url, private), 200),
        "expired": (_token(fake.url, private, exp=time.time() - 10), 403),
        "other audience": (_token(fake.url, private, aud="billing"), 403),
        "other issuer": (_token("http://evil.example", private), 403),
        "forged": (_token(fake.url, stranger), 403),
    }
    with TestClient(create_app(settings)) as client:
        for name, (token, status) in cases.items():
            answer = client.post("/reload", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == status, (name, answer.text)
            if status == 403:
                assert answer.json()["detail"].startswith("the token is not valid"), name
        assert client.post("/reload", headers={"X-API-Key": KEY}).status_code == 200
    paths = [request.path for request in fake.requests]
    assert paths.count("/.well-known/openid-configuration") == 1  # discovered once, cached


def test_rate_limits_let_requests_through_while_redis_is_down(
    served: Served, airflow: FakeAirflow
) -> None:
    """Redis down must not turn the API off: the limiter logs and lets requests pass."""
    (closed,) = free_ports(1)
    settings = secured(served, airflow).with_overrides(
        redis_url=f"redis://127.0.0.1:{closed}/0", rate_limit_costly="1/minute"
    )
    with TestClient(create_app(settings)) as client:
        statuses = [
            client.post("/reload", headers={"X-API-Key": KEY}).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 200]
