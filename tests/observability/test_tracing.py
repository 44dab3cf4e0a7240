"""One trace per request across the real gateway, feature service and predictor.

The three run as processes under the stack's supervisord with ``OTEL_TRACES_EXPORTER=otlp``
pointed at a receiver of the test's own; a request then shows up there as one connected
trace, continued from the client's W3C ``traceparent`` when it sends one.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import free_ports, start_stack
from tests.observability.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.predictor.conftest import Served, predictor_settings
from vroom_cli.bench import SAMPLE_VEHICLE
from vroom_cli.run import gateway_url
from vroom_cli.stack import down
from vroom_cli.stack.services import GATEWAY
from vroom_cli.stack.settings import StackSettings
from vroom_common.errors import InvalidInput
from vroom_common.tracing import configure_tracing
from vroom_pipelines.materialize import materialize
from vroom_pipelines.seed import seed_synthetic

pytestmark = pytest.mark.integration

#: The shared Redis database these tests own.
REDIS_DB = 9
SERVICES = {"vroom-gateway", "vroom-feature-service", "vroom-predictor"}


@dataclass
class Traced:
    settings: StackSettings
    receiver: OtlpReceiver
    url: str


@pytest.fixture(scope="module")
def traced(
    champion_model_dir: Path,
    stack_settings: StackSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Traced]:
    base = predictor_settings(stack_settings, tmp_path_factory.mktemp("traced") / "state")
    host, port = base.redis_host_port
    features_port, gateway_port = free_ports(2)
    settings = base.with_overrides(
        redis_url=f"redis://{host}:{port}/{REDIS_DB}",
        feature_service_port=features_port,
        gateway_port=gateway_port,
    )
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    client.close()
    seed_synthetic(settings, 20)
    materialize(settings)
    served = Served(settings, champion_model_dir)
    version = served.promote_new_version()
    with otlp_receiver() as receiver, pytest.MonkeyPatch.context() as env:
        # The stack's supervisord hands its environment to every service it starts.
        env.setenv("OTEL_TRACES_EXPORTER", "otlp")
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        env.setenv("VROOM_LOG_FORMAT", "json")
        start_stack(settings, ("predictor", "features", "gateway"))
        try:
            served.wait_version(version)
            yield Traced(settings, receiver, gateway_url(settings))
        finally:
            down(settings)


def _check_connected(spans: list[ReceivedSpan], root_parent: str) -> None:
    """Every span's parent is in the trace, but one: the trace's entry, whose parent is
    ``root_parent`` (the client's span, or none)."""
    ids = {s.span_id for s in spans}
    entries = [s for s in spans if s.parent_id not in ids]
    assert [(s.service, s.parent_id) for s in entries] == [("vroom-gateway", root_parent)], [
        (s.service, s.name, s.parent_id) for s in spans
    ]


def test_a_predict_request_is_one_trace_across_the_three_services(traced: Traced) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    response = httpx.post(
        f"{traced.url}/predict",
        json=SAMPLE_VEHICLE,
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    spans = traced.receiver.wait_for(trace_id, SERVICES)
    assert {s.service for s in spans} == SERVICES
    _check_connected(spans, parent)
    names = {(s.service, s.name) for s in spans}
    # Our own spans: the feature computation, the inference, the serialization.
    assert ("vroom-feature-service", "features.compute") in names
    assert ("vroom-predictor", "inference") in names
    assert ("vroom-gateway", "serialization") in names
    # The predictor's spans hang under the gateway's gRPC call, not beside it.
    by_id = {s.span_id: s for s in spans}
    inference = next(s for s in spans if s.name == "inference")
    chain = []
    node: ReceivedSpan | None = inference
    while node is not None:
        chain.append(node.service)
        node = by_id.get(node.parent_id)
    assert chain[-1] == "vroom-gateway"
    assert "vroom-predictor" in chain


def test_a_request_without_traceparent_starts_its_own_trace(traced: Traced) -> None:
    before = {s.trace_id for s in traced.receiver.spans()}
    response = httpx.post(f"{traced.url}/predict/id", json={"vehicle_id": 1}, timeout=30)
    assert response.status_code == 200, response.text
    receiver = traced.receiver
    new: set[str] = set()
    deadline = time.monotonic() + 30
    while not new and time.monotonic() < deadline:
        time.sleep(0.1)
        new = {s.trace_id for s in receiver.spans()} - before
    spans = receiver.wait_for(next(iter(new)), SERVICES)
    assert {s.trace_id for s in receiver.spans()} - before == new
    assert len(new) == 1  # one request, one trace
    _check_connected(spans, "")
    # By id: the feature read from the online store is a span of the feature service.
    assert "features.online_read" in {s.name for s in spans}


def test_the_trace_id_is_on_the_gateway_log_lines_of_the_request(traced: Traced) -> None:
    trace_id = secrets.token_hex(16)
    response = httpx.post(
        f"{traced.url}/reload",  # logs what the predictor serves, from a worker thread
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    lines = GATEWAY.log_path(traced.settings).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    mine = [r for r in records if r.get("trace_id") == trace_id]
    assert "predictor serves the champion" in {r["event"] for r in mine}
    assert all(len(r["span_id"]) == 16 for r in mine)


def test_probes_and_scrapes_are_not_traced(traced: Traced) -> None:
    before = len(traced.receiver.spans())
    for path in ("/health", "/metrics"):
        assert httpx.get(f"{traced.url}{path}", timeout=10).status_code == 200
    time.sleep(1.0)
    assert [s.name for s in traced.receiver.spans()[before:] if "health" in s.name] == []


# --- configuration ------------------------------------------------------------------------


def test_tracing_is_off_unless_an_exporter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert configure_tracing("vroom-test") is False
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert configure_tracing("vroom-test") is False
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert configure_tracing("vroom-test") is False


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin-typo", "OTEL_TRACES_EXPORTER"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_misconfigured_exporter_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInput, match=named):
        configure_tracing("vroom-test")


def test_the_console_exporter_writes_one_json_line_per_span() -> None:
    code = (
        "import structlog\n"
        "from vroom_common.logs import configure_logging\n"
        "from vroom_common.tracing import configure_tracing, shutdown_tracing, span\n"
        "configure_logging('json')\n"
        "configure_tracing('vroom-console-test')\n"
        "with span('outer', rows=3):\n"
        "    with span('inner'):\n"
        "        structlog.get_logger().info('inside')\n"
        "shutdown_tracing()\n"
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "VROOM_LOG_FORMAT": "json"}
    env.pop("OTEL_SDK_DISABLED", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spans = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [s["name"] for s in spans] == ["inner", "outer"]
    inner, outer = spans
    assert inner["context"]["trace_id"] == outer["context"]["trace_id"]
    assert inner["parent_id"] == outer["context"]["span_id"]
    assert outer["attributes"] == {"rows": 3}
    assert outer["resource"]["attributes"]["service.name"] == "vroom-console-test"
    # The log (stderr) line written inside the inner span carries its ids.
    logged = [json.loads(line) for line in done.stderr.splitlines() if '"inside"' in line]
    assert [(r["trace_id"], r["span_id"]) for r in logged] == [
        (inner["context"]["trace_id"][2:], inner["context"]["span_id"][2:])
    ]
