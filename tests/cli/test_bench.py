"""``vroom bench``: hey's CSV, the statistics, the targets, and the command against a tiny
local HTTP server (no stack). Tests that run hey skip, naming the package, without it."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import free_ports
from vroom_cli import bench
from vroom_cli.bench import (
    BenchError,
    HeyRow,
    compute_stats,
    make_scenarios,
    parse_hey_csv,
    percentile,
    run_hey,
)
from vroom_cli.main import app

HEY = shutil.which("hey")
needs_hey = pytest.mark.skipif(
    HEY is None, reason="the load generator is missing: apt-get install -y hey (Debian 'hey')"
)

HEADER = (
    "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset"
)


# --- statistics ---------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 25) == 2.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([7.0], 99) == 7.0
    hundred = [float(i) for i in range(1, 101)]
    assert percentile(hundred, 95) == pytest.approx(95.05)
    assert percentile(hundred, 99) == pytest.approx(99.01)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_parse_hey_csv_and_compute_stats() -> None:
    # 10 requests sent; 8 rows: 6 x 200, one 503, one 404; two never answered.
    lines = [HEADER]
    latencies = [0.0010, 0.0020, 0.0030, 0.0040, 0.0050, 0.0100]
    for index, seconds in enumerate(latencies):
        lines.append(
            f"{seconds:.4f},0.0001,0.0000,0.0000,{seconds:.4f},0.0000,200,{index * 0.01:.4f}"
        )
    lines.append("0.0005,0.0001,0.0000,0.0000,0.0004,0.0000,503,0.0600")
    lines.append("0.0007,0.0001,0.0000,0.0000,0.0006,0.0000,404,0.1900")
    rows = parse_hey_csv("\n".join(lines) + "\n")
    assert len(rows) == 8
    assert rows[0] == HeyRow(response_time_s=0.001, status=200, offset_s=0.0)

    stats = compute_stats(rows, sent=10, fallback_wall_s=99.0)
    assert (stats.responses, stats.ok, stats.non_2xx) == (8, 6, 2)
    assert stats.transport_errors == 2
    assert stats.errors == 4
    # latencies of the 2xx only: 1,2,3,4,5,10 ms
    assert stats.p50_ms == pytest.approx(3.5)
    assert stats.p95_ms == pytest.approx(8.75)
    assert stats.p99_ms == pytest.approx(9.75)
    assert stats.max_ms == pytest.approx(10.0)
    # wall: last response ends at 0.19 + 0.0007 s; 8 responses over it
    assert stats.wall_s == pytest.approx(0.1907)
    assert stats.throughput_rps == pytest.approx(8 / 0.1907, abs=0.1)


def test_no_response_at_all_counts_every_request_as_an_error() -> None:
    stats = compute_stats(parse_hey_csv(HEADER + "\n"), sent=5, fallback_wall_s=2.0)
    assert stats.errors == stats.transport_errors == 5
    assert stats.p50_ms is None
    assert stats.throughput_rps == 0.0
    assert stats.wall_s == 2.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a,b,c\n1,2,3\n",
        HEADER + "\nnot,a,number,0,0,0,200,0\n",
        HEADER + "\n0.1,0,0,0,0,0,200\n",
    ],
    ids=["empty", "other-header", "bad-number", "short-row"],
)
def test_parse_hey_csv_rejects_other_output(text: str) -> None:
    with pytest.raises(BenchError):
        parse_hey_csv(text)


def test_targets_are_judged_on_the_figures() -> None:
    scenarios = make_scenarios(
        vehicle_id=7,
        batch=[bench.SAMPLE_VEHICLE] * 1000,
        requests=100,
        batch_requests=10,
        concurrency=16,
        warmup=5,
    )
    by_name = {scenario.name: scenario for scenario in scenarios}
    assert set(by_name) == {
        "/predict c=1",
        "/predict c=16",
        "/predict/id c=1",
        "/predict/id c=16",
        "/predict/batch 1000 c=1",
    }
    assert json.loads(by_name["/predict/id c=1"].body) == {"vehicle_id": 7}
    assert len(json.loads(by_name["/predict/batch 1000 c=1"].body)) == 1000
    assert by_name["/predict c=16"].sent == 96  # hey: 16 workers x (100 // 16)

    def row(ms: float, status: int = 200, offset: float = 0.0) -> HeyRow:
        return HeyRow(ms / 1000, status, offset)

    fast = compute_stats([row(1.0), row(1.1), row(1.2)], 3, 1.0)
    slow = compute_stats([row(1.3), row(1.4), row(1.5)], 3, 1.0)
    tail = compute_stats([row(1.0)] * 99 + [row(3.5)] * 2, 101, 1.0)  # p50 fine, p99 not
    latency = by_name["/predict c=1"].target
    assert latency is not None
    assert latency.met(fast)
    assert not latency.met(slow)
    assert not latency.met(tail)

    rps = by_name["/predict c=16"].target
    assert rps is not None
    quick = [row(1.0, offset=i / 2500) for i in range(2500)]  # 2,500 responses in ~1 s
    assert rps.met(compute_stats(quick, 2500, 1.0))
    assert not rps.met(compute_stats(quick, 2501, 1.0))  # one transport error
    assert not rps.met(compute_stats([*quick[:-1], row(1.0, 500, 0.999)], 2500, 1.0))
    slow_rate = [row(1.0, offset=i / 1900) for i in range(1900)]  # 1,900 responses in ~1 s
    assert not rps.met(compute_stats(slow_rate, 1900, 1.0))

    batch = by_name["/predict/batch 1000 c=1"].target
    assert batch is not None
    assert batch.met(compute_stats([row(11.0)], 1, 1.0))
    assert not batch.met(compute_stats([row(13.0)], 1, 1.0))
    by_id = by_name["/predict/id c=1"].target
    assert by_id is not None
    assert by_id.met(compute_stats([row(1.4)], 1, 1.0))
    assert not by_id.met(compute_stats([row(1.6)], 1, 1.0))


# --- against a tiny local gateway -------------------------------------------------------------


@dataclass
class FakeGateway:
    url: str
    bodies: dict[str, list[Any]] = field(default_factory=dict)
    fail_every: int = 0


@pytest.fixture
def fake_gateway() -> Iterator[FakeGateway]:
    """A threaded HTTP server answering like the gateway; ``/flaky`` gives 503 on every
    ``fail_every``-th request. Records the JSON bodies it receives per path."""
    port = free_ports(1)[0]
    gateway = FakeGateway(url=f"http://127.0.0.1:{port}")
    lock = threading.Lock()
    counter = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _send(self, status: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok", "model_version": "3"})
            elif self.path == "/vehicles":
                self._send(
                    200,
                    [
                        {"vehicle_id": 2001, "source": "ui"},
                        {"vehicle_id": 7, "source": "csv"},
                    ],
                )
            else:
                self._send(404, {"detail": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                gateway.bodies.setdefault(self.path, []).append(body)
                counter[0] += 1
                number = counter[0]
            if self.path == "/flaky" and gateway.fail_every and number % gateway.fail_every == 0:
                self._send(503, {"detail": "no model"})
            elif self.path == "/predict/batch":
                self._send(200, {"predictions": [{"predicted_reservations": 1.0}] * len(body)})
            else:
                self._send(200, {"predicted_reservations": 4.2, "model_version": "3"})

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@needs_hey
def test_real_hey_csv_counts_responses_and_non_2xx(
    fake_gateway: FakeGateway, tmp_path: Path
) -> None:
    assert HEY is not None
    fake_gateway.fail_every = 4
    body = tmp_path / "body.json"
    body.write_text(json.dumps(bench.SAMPLE_VEHICLE))
    output, _elapsed = run_hey(HEY, f"{fake_gateway.url}/flaky", body, 40, 4)
    rows = parse_hey_csv(output)  # hey's real header and rows
    stats = compute_stats(rows, 40, 1.0)
    assert stats.responses == 40
    assert stats.non_2xx == 10
    assert stats.errors == 10
    assert stats.transport_errors == 0
    assert stats.p50_ms is not None
    assert 0 < stats.p50_ms < 1000
    assert stats.throughput_rps > 0
    assert fake_gateway.bodies["/flaky"][0] == bench.SAMPLE_VEHICLE


@needs_hey
def test_real_hey_against_a_closed_port_reports_transport_errors(tmp_path: Path) -> None:
    assert HEY is not None
    body = tmp_path / "body.json"
    body.write_text("{}")
    port = free_ports(1)[0]
    output, elapsed = run_hey(HEY, f"http://127.0.0.1:{port}/predict", body, 6, 2)
    stats = compute_stats(parse_hey_csv(output), 6, elapsed)
    assert stats.responses == 0
    assert stats.errors == stats.transport_errors == 6


@needs_hey
def test_bench_command_against_a_running_gateway(fake_gateway: FakeGateway, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--url", fake_gateway.url, "--requests", "32", "--batch-requests", "3"]
    args += ["--concurrency", "4", "--warmup", "2", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "/predict/batch 1000 c=1" in result.output

    document = json.loads(out.read_text())
    assert document["url"] == fake_gateway.url
    assert document["model_version"] == "3"
    scenarios = {item["name"]: item for item in document["scenarios"]}
    assert list(scenarios) == [
        "/predict c=1",
        "/predict c=4",
        "/predict/id c=1",
        "/predict/id c=4",
        "/predict/batch 1000 c=1",
    ]
    for item in scenarios.values():
        assert item["errors"] == 0, item
        assert item["responses"] == item["sent"]
        assert item["p50_ms"] is not None
    assert scenarios["/predict c=1"]["sent"] == 32
    assert scenarios["/predict/batch 1000 c=1"]["sent"] == 3
    assert isinstance(scenarios["/predict c=1"]["target_met"], bool)
    assert isinstance(scenarios["/predict/id c=1"]["target_met"], bool)
    # a gateway of its own: no local processes probed, no stages in its /metrics
    assert scenarios["/predict c=1"]["cpu_ms_per_request"] is None
    assert scenarios["/predict c=1"]["stages_ms"] is None
    # warm-up requests reach the server but are not counted
    assert len(fake_gateway.bodies["/predict/batch"]) == 3 + 1
    # the id of the first fleet ('csv') vehicle of GET /vehicles; the synthetic batch
    assert fake_gateway.bodies["/predict/id"][0] == {"vehicle_id": 7}
    assert len(fake_gateway.bodies["/predict/batch"][0]) == 1000
    assert set(fake_gateway.bodies["/predict/batch"][0][0]) == set(bench.SAMPLE_VEHICLE)


@needs_hey
def test_bench_json_on_stdout(fake_gateway: FakeGateway) -> None:
    args = ["bench", "--url", fake_gateway.url, "--requests", "4", "--batch-requests", "1"]
    args += ["--concurrency", "2", "--warmup", "0", "--json", "-"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # the table went to stderr
    assert len(document["scenarios"]) == 5
    assert all(item["warmup"] == 0 for item in document["scenarios"])


def test_missing_load_generator_exits_1_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no hey, no apt-get
    result = CliRunner().invoke(app, ["bench", "--url", "http://127.0.0.1:9", "--no-install"])
    assert result.exit_code == 1
    assert "apt-get install -y hey" in result.stderr


@needs_hey
def test_bad_data_dir_exits_1_with_the_reason(fake_gateway: FakeGateway, tmp_path: Path) -> None:
    (tmp_path / "vehicles.csv").write_text("vehicle_id,technology\n1,1\n")
    args = ["bench", "--url", fake_gateway.url, "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.output


@needs_hey
def test_unreachable_gateway_exits_1() -> None:
    port = free_ports(1)[0]
    result = CliRunner().invoke(app, ["bench", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "does not answer GET /health" in result.stderr
