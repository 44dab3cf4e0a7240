"""``vroom bench``: load-test the gateway with an external load generator (``hey``).

Brings the local stack up with a champion (what ``vroom run`` does) unless ``--url``
names a gateway that already runs, then drives five scenarios with ``hey``:
``POST /predict`` and ``POST /predict/id`` at concurrency 1 and 16, and
``POST /predict/batch`` with 1,000 vehicles at concurrency 1. Each scenario gets a
short warm-up that is not counted. On the local stack it then compares our online
lookup (the feature service's ``POST /v1/features/online``) with Feast's own feature
server (``feast serve``, started on the same Redis and feature view) at both
concurrencies.

Beside the latencies, for every gateway scenario: the mean time of each stage of a
prediction (from the gateway's ``vroom_gateway_stage_seconds``, see
:mod:`vroom_cli.bench_probe`) and, on the local stack, each service's CPU
milliseconds per request and resident memory at idle and at its peak under load.

Figures come from hey's per-request CSV (``-o csv``), computed here: latency
percentiles of the successful (2xx) requests, throughput as responses received over
the run's wall time, and errors as non-2xx responses plus requests that never got a
response (hey leaves transport errors out of its CSV, so they are the requests sent
minus the rows). hey writes times in seconds with four decimals: a 0.1 ms resolution.

Targets (issue 13, on a 2-core machine) are shown next to the figures; a missed target
never fails the command. Exit 1 only when the load generator or the gateway cannot run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vroom_cli.bench_probe import (
    FeastPeer,
    ProcessProbe,
    Sums,
    cpu_ms_per_request,
    feast_request,
    feast_values,
    scrape,
    stage_means,
)
from vroom_cli.run import ensure_champion, gateway_url
from vroom_cli.stack.control import status as stack_status
from vroom_cli.stack.settings import StackSettings, get_stack_settings
from vroom_common.schemas import MAX_BATCH_VEHICLES, RAW_ATTRIBUTES
from vroom_pipelines.cli import exit_on_error

#: The Debian package (and binary) of the load generator.
HEY_PACKAGE: Final = "hey"
#: hey's CSV header (``hey -o csv``); times in seconds, ``offset`` from the run's start.
HEY_CSV_COLUMNS: Final = (
    "response-time",
    "DNS+dialup",
    "DNS",
    "Request-write",
    "Response-delay",
    "Response-read",
    "status-code",
    "offset",
)
#: Per-request timeout given to hey (seconds).
REQUEST_TIMEOUT_S: Final = 20

#: One vehicle of the /predict scenarios (SPEC's VehicleFeatures).
SAMPLE_VEHICLE: Final[dict[str, Any]] = {
    "technology": 1,
    "actual_price": 45.0,
    "recommended_price": 50.0,
    "num_images": 8,
    "street_parked": 0,
    "description": 250,
}


class BenchError(Exception):
    """The benchmark cannot run (no load generator, gateway unreachable)."""


# --- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear between closest ranks.

    The same definition as numpy's default (``linear``): rank ``q/100 * (n - 1)``.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0-100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100 (got {q})")
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class HeyRow:
    """One request of hey's CSV: its latency, status and start offset (seconds)."""

    response_time_s: float
    status: int
    offset_s: float


def parse_hey_csv(text: str) -> list[HeyRow]:
    """The rows of ``hey -o csv`` output.

    Raises:
        BenchError: the header is not hey's or a row does not parse.
    """
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(column.strip() for column in header) != HEY_CSV_COLUMNS:
        raise BenchError(f"unexpected hey CSV header {header!r} (expected {HEY_CSV_COLUMNS})")
    rows = []
    for number, record in enumerate(reader, start=2):
        if not record:
            continue
        try:
            values = dict(zip(HEY_CSV_COLUMNS, record, strict=True))
            rows.append(
                HeyRow(
                    response_time_s=float(values["response-time"]),
                    status=int(values["status-code"]),
                    offset_s=float(values["offset"]),
                )
            )
        except ValueError as exc:
            raise BenchError(f"hey CSV line {number} does not parse: {record!r} ({exc})") from exc
    return rows


@dataclass(frozen=True)
class Stats:
    """One scenario's figures."""

    sent: int
    responses: int
    ok: int
    non_2xx: int
    transport_errors: int
    errors: int
    wall_s: float
    throughput_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None


def compute_stats(rows: Sequence[HeyRow], sent: int, fallback_wall_s: float) -> Stats:
    """Figures of one run of ``sent`` requests from hey's rows.

    Latency percentiles are over the 2xx responses. The wall time is from hey's start to
    the last response (``offset + response-time``); ``fallback_wall_s`` (the process's
    time) when there is no row.
    """
    ok_ms = [row.response_time_s * 1000 for row in rows if 200 <= row.status < 300]
    non_2xx = len(rows) - len(ok_ms)
    transport = max(sent - len(rows), 0)
    wall = max((row.offset_s + row.response_time_s for row in rows), default=0.0)
    if wall <= 0:
        wall = fallback_wall_s

    def pct(q: float) -> float | None:
        return round(percentile(ok_ms, q), 3) if ok_ms else None

    return Stats(
        sent=sent,
        responses=len(rows),
        ok=len(ok_ms),
        non_2xx=non_2xx,
        transport_errors=transport,
        errors=non_2xx + transport,
        wall_s=round(wall, 4),
        throughput_rps=round(len(rows) / wall, 1) if wall > 0 else 0.0,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        mean_ms=round(sum(ok_ms) / len(ok_ms), 3) if ok_ms else None,
        max_ms=round(max(ok_ms), 3) if ok_ms else None,
    )


# --- targets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A figure the issue asks for: ``check`` says whether ``stats`` meet it."""

    text: str
    check: Callable[[Stats], bool]

    def met(self, stats: Stats) -> bool:
        return self.check(stats)


def _latency_at_most(p50_ms: float, p99_ms: float) -> Target:
    return Target(
        f"p50 <= {p50_ms:g}, p99 <= {p99_ms:g} ms",
        lambda stats: (
            stats.p50_ms is not None
            and stats.p50_ms <= p50_ms
            and stats.p99_ms is not None
            and stats.p99_ms <= p99_ms
        ),
    )


def _throughput_at_least(rps: float) -> Target:
    return Target(
        f">= {rps:g} req/s, 0 errors",
        lambda stats: stats.throughput_rps >= rps and stats.errors == 0,
    )


# --- scenarios ---------------------------------------------------------------------------


#: The servers a scenario can drive (``server`` of :class:`Scenario`).
GATEWAY: Final = "gateway"
FEATURES: Final = "features"
FEAST: Final = "feast serve"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    body: str
    concurrency: int
    requests: int
    warmup: int
    target: Target | None = None
    server: str = GATEWAY

    @property
    def sent(self) -> int:
        """Requests hey really sends: each of ``c`` workers sends ``n // c``."""
        return (self.requests // self.concurrency) * self.concurrency


@dataclass
class Result:
    scenario: Scenario
    stats: Stats
    target_met: bool | None = None
    #: Mean ms per request of each gateway stage (gateway scenarios).
    stages_ms: dict[str, float] | None = None
    #: CPU ms per request of each local process.
    cpu_ms: dict[str, float] | None = None
    #: Peak resident memory of each local process during the run (MiB).
    rss_peak_mb: dict[str, float] | None = None

    def as_json(self) -> dict[str, Any]:
        target = self.scenario.target
        return {
            "name": self.scenario.name,
            "server": self.scenario.server,
            "method": "POST",
            "path": self.scenario.path,
            "concurrency": self.scenario.concurrency,
            "requests": self.scenario.requests,
            "warmup": self.scenario.warmup,
            **asdict(self.stats),
            "target": target.text if target else None,
            "target_met": self.target_met,
            "stages_ms": self.stages_ms,
            "cpu_ms_per_request": self.cpu_ms,
            "rss_peak_mb": self.rss_peak_mb,
        }


def batch_vehicles(data_dir: Path | None, n: int = MAX_BATCH_VEHICLES) -> list[dict[str, Any]]:
    """``n`` vehicles' raw attributes: the first ``n`` of ``data_dir``'s fleet when given
    (validated like the seed pipeline does), else a synthetic fleet."""
    if data_dir is not None:
        from vroom_pipelines.seed import load_csv_dir  # noqa: PLC0415 (pandas, only here)

        vehicles = load_csv_dir(data_dir).vehicles
    else:
        from vroom_pipelines.synthetic import generate_fleet  # noqa: PLC0415

        vehicles = generate_fleet(n).vehicles
    rows: list[dict[str, Any]] = [dict(vehicle) for vehicle in vehicles[:n]]
    chosen = [{name: row[name] for name in RAW_ATTRIBUTES} for row in rows]
    if len(chosen) < n:  # a smaller fleet: repeat it up to n
        chosen = [chosen[i % len(chosen)] for i in range(n)]
    return chosen


def pick_vehicle_id(url: str) -> int:
    """A fleet vehicle the gateway knows: the first ``csv`` vehicle of ``GET /vehicles``;
    vehicle 1 (the seeded fleet starts there) when the gateway has no such route."""
    try:
        response = httpx.get(f"{url}/vehicles", timeout=30)
        if response.status_code == 200:
            vehicles = response.json()
            fleet = [v for v in vehicles if v.get("source") == "csv"] or vehicles
            if fleet:
                return int(fleet[0]["vehicle_id"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return 1


def make_scenarios(
    *,
    vehicle_id: int,
    batch: list[dict[str, Any]],
    requests: int,
    batch_requests: int,
    concurrency: int,
    warmup: int,
) -> list[Scenario]:
    one = json.dumps(SAMPLE_VEHICLE)
    by_id = json.dumps({"vehicle_id": vehicle_id})
    many = json.dumps(batch)
    return [
        Scenario("/predict c=1", "/predict", one, 1, requests, warmup, _latency_at_most(1.2, 3)),
        Scenario(
            f"/predict c={concurrency}",
            "/predict",
            one,
            concurrency,
            requests,
            warmup,
            _throughput_at_least(2000),
        ),
        Scenario(
            "/predict/id c=1", "/predict/id", by_id, 1, requests, warmup, _latency_at_most(1.5, 4)
        ),
        Scenario(
            f"/predict/id c={concurrency}",
            "/predict/id",
            by_id,
            concurrency,
            requests,
            warmup,
            _throughput_at_least(1500),
        ),
        Scenario(
            f"/predict/batch {len(batch)} c=1",
            "/predict/batch",
            many,
            1,
            batch_requests,
            min(warmup, max(1, warmup // 10)),
            _latency_at_most(12, 30) if len(batch) == MAX_BATCH_VEHICLES else None,
        ),
    ]


def peer_scenarios(
    *, vehicle_id: int, requests: int, concurrency: int, warmup: int
) -> list[Scenario]:
    """One vehicle's online features: from our feature service and from ``feast serve``,
    at concurrency 1 and ``concurrency``."""
    ours = json.dumps({"vehicle_ids": [vehicle_id]})
    theirs = json.dumps(feast_request(vehicle_id))
    return [
        Scenario(f"online lookup c={c} · {label}", path, body, c, requests, warmup, server=server)
        for c in (1, concurrency)
        for label, path, body, server in (
            ("ours", "/v1/features/online", ours, FEATURES),
            ("feast serve", "/get-online-features", theirs, FEAST),
        )
    ]


# --- the load generator ------------------------------------------------------------------


def ensure_hey(install: bool = True) -> str:
    """The path of ``hey``; installed with apt-get when missing and allowed (as root).

    Raises:
        BenchError: hey is missing and cannot be installed here.
    """
    found = shutil.which("hey")
    if found:
        return found
    apt = shutil.which("apt-get")
    if not install or apt is None or os.geteuid() != 0:
        why = (
            "installing was turned off (--no-install)"
            if not install
            else "apt-get is not available"
            if apt is None
            else "installing needs root"
        )
        raise BenchError(
            f"the load generator 'hey' is not installed and {why}: install the Debian "
            f"package '{HEY_PACKAGE}' (sudo apt-get install -y {HEY_PACKAGE}) and retry"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = [apt, "install", "-y", "--no-install-recommends", HEY_PACKAGE]
    if subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run([apt, "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"apt-get install {HEY_PACKAGE} failed: {done.stderr.strip()[-500:]}")
    found = shutil.which("hey")
    if not found:
        raise BenchError(f"the package '{HEY_PACKAGE}' was installed but 'hey' is not on PATH")
    return found


def run_hey(
    hey: str, url: str, body_file: Path, requests: int, concurrency: int
) -> tuple[str, float]:
    """Run hey once; its CSV output and the process's wall time.

    Raises:
        BenchError: hey exits non-zero (bad flags, unreachable URL given as invalid).
    """
    command = [
        hey,
        "-n",
        str(requests),
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(body_file),
        "-t",
        str(REQUEST_TIMEOUT_S),
        "-o",
        "csv",
        url,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(
            f"hey exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}"
        )
    return done.stdout, elapsed


def run_scenario(
    hey: str,
    base_url: str,
    scenario: Scenario,
    workdir: Path,
    *,
    probe: ProcessProbe | None = None,
    metrics_url: str | None = None,
) -> Result:
    """One scenario: warm-up, then the counted run, with ``probe``'s processes' CPU and
    peak memory and the stage means from ``metrics_url``'s ``/metrics`` around it."""
    body_file = workdir / f"{scenario.path.strip('/').replace('/', '_')}.json"
    body_file.write_text(scenario.body)
    url = f"{base_url}{scenario.path}"
    if scenario.warmup:
        run_hey(
            hey, url, body_file, max(scenario.warmup, scenario.concurrency), scenario.concurrency
        )
    before: Sums = scrape(metrics_url) if metrics_url else {}
    cpu_before = probe.cpu_seconds() if probe else {}
    peaks: dict[str, float] = {}
    with probe.peak_rss() if probe else contextlib.nullcontext(peaks) as peaks:
        output, elapsed = run_hey(hey, url, body_file, scenario.requests, scenario.concurrency)
    cpu_after = probe.cpu_seconds() if probe else {}
    stats = compute_stats(parse_hey_csv(output), scenario.sent, elapsed)
    met = scenario.target.met(stats) if scenario.target else None
    return Result(
        scenario,
        stats,
        met,
        stages_ms=stage_means(before, scrape(metrics_url), scenario.path) if metrics_url else None,
        cpu_ms=cpu_ms_per_request(cpu_before, cpu_after, stats.responses) if probe else None,
        rss_peak_mb=dict(peaks) or None,
    )


def check_gateway(url: str) -> dict[str, Any]:
    """The gateway's ``/health``.

    Raises:
        BenchError: the gateway does not answer.
    """
    try:
        response = httpx.get(f"{url}/health", timeout=10)
        response.raise_for_status()
        health: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise BenchError(f"the gateway at {url} does not answer GET /health: {exc}") from exc
    return health


# --- output --------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def results_table(results: Sequence[Result], url: str) -> Table:
    table = Table(
        title=f"vroom bench · {url} · hey · latency in ms",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("scenario", no_wrap=True)
    for column in ("requests", "errors", "p50", "p95", "p99", "max", "req/s"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True)
    for result in results:
        stats = result.stats
        target = result.scenario.target
        verdict = (
            Text("")
            if target is None
            else Text(f"met: {target.text}", style="green")
            if result.target_met
            else Text(f"missed: {target.text}", style="red")
        )
        table.add_row(
            result.scenario.name,
            str(stats.sent),
            Text(str(stats.errors), style="red" if stats.errors else ""),
            _ms(stats.p50_ms),
            _ms(stats.p95_ms),
            _ms(stats.p99_ms),
            _ms(stats.max_ms),
            f"{stats.throughput_rps:.0f}",
            verdict,
        )
    return table


def _ms3(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def stages_table(results: Sequence[Result]) -> Table | None:
    """Mean ms per request of each gateway stage, the rest of the gateway's handling
    (``other``: middleware, routing, writing), its whole handling (``server``) and the
    client's view (hey's mean); ``None`` when the gateway exports no stages."""
    shown = [r for r in results if r.stages_ms]
    if not shown:
        return None
    table = Table(
        title="where the time goes · mean ms per request (the gateway's clock; client: hey's)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("scenario", no_wrap=True)
    columns = ("parse", "features", "inference", "serialize", "other", "server")
    for column in (*columns, "client"):
        table.add_column(column, justify="right", no_wrap=True)
    for result in shown:
        stages = result.stages_ms or {}
        table.add_row(
            result.scenario.name,
            *(_ms3(stages.get(column)) for column in columns),
            _ms3(result.stats.mean_ms),
        )
    return table


def cpu_table(results: Sequence[Result]) -> Table | None:
    """Each process's CPU ms per request (user + system); ``None`` without probes."""
    shown = [r for r in results if r.cpu_ms]
    if not shown:
        return None
    processes = list(dict.fromkeys(name for r in shown for name in r.cpu_ms or {}))
    table = Table(
        title="CPU ms per request, by process (2 cores: the sum bounds throughput)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("scenario", no_wrap=True)
    for name in (*processes, "sum"):
        table.add_column(name, justify="right", no_wrap=True)
    for result in shown:
        cpu = result.cpu_ms or {}
        table.add_row(
            result.scenario.name,
            *(_ms3(cpu.get(name)) for name in processes),
            _ms3(sum(cpu.values())),
        )
    return table


def memory_table(idle: dict[str, float], results: Sequence[Result]) -> Table | None:
    """Each process's resident memory at idle and its peak under load (MiB)."""
    peaks: dict[str, float] = {}
    for result in results:
        for name, size in (result.rss_peak_mb or {}).items():
            peaks[name] = max(peaks.get(name, 0.0), size)
    if not idle and not peaks:
        return None
    table = Table(title="resident memory · MiB", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("process", "idle", "peak under load"):
        table.add_column(column, justify="right" if column != "process" else "left")
    for name in dict.fromkeys([*idle, *peaks]):
        table.add_row(
            name,
            f"{idle[name]:.0f}" if name in idle else "-",
            f"{peaks[name]:.0f}" if name in peaks else "-",
        )
    return table


def report(
    results: Sequence[Result],
    url: str,
    health: dict[str, Any],
    load_before: float,
    idle_rss_mb: dict[str, float] | None = None,
) -> dict[str, Any]:
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "url": url,
        "load_generator": "hey",
        "latency_resolution_ms": 0.1,
        "cpus": os.cpu_count(),
        # Other work on the machine skews the figures: the 1-minute load before the run.
        "load_average_1m_before": round(load_before, 2),
        "model_version": health.get("model_version"),
        "idle_rss_mb": idle_rss_mb or None,
        "scenarios": [result.as_json() for result in results],
    }


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Keep stdout for the JSON (``--json -``): other output goes to stderr."""
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


# --- the command ---------------------------------------------------------------------------


def bench_command(
    *,
    url: Annotated[
        str | None,
        typer.Option(
            help="Bench this running gateway instead of starting the local stack (when it "
            "is the local stack's gateway, its processes are probed and the peer runs too)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="The fleet's CSV folder: trains on it when there is no champion and "
            "gives the batch its 1,000 vehicles (default: a synthetic fleet).",
            file_okay=False,
            resolve_path=True,
        ),
    ] = None,
    requests: Annotated[
        int, typer.Option(min=1, help="Requests per /predict and /predict/id scenario.")
    ] = 3000,
    batch_requests: Annotated[
        int, typer.Option(min=1, help="Requests of the 1,000-vehicle batch scenario.")
    ] = 300,
    concurrency: Annotated[
        int, typer.Option(min=2, help="The high concurrency level (the other one is 1).")
    ] = 16,
    warmup: Annotated[
        int, typer.Option(min=0, help="Warm-up requests per scenario (not counted).")
    ] = 100,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="Write the results as JSON here; '-' prints them on stdout "
            "(default: <state dir>/bench/<timestamp>.json).",
        ),
    ] = None,
    install: Annotated[
        bool, typer.Option(help="apt-get install hey when it is missing (as root).")
    ] = True,
    peer: Annotated[
        bool,
        typer.Option(
            help="On the local stack, compare our online lookup with `feast serve` on the "
            "same Redis and feature view."
        ),
    ] = True,
) -> None:
    """Load-test the gateway with hey: /predict and /predict/id at concurrency 1 and 16,
    /predict/batch with 1,000 vehicles; p50/p95/p99/max, throughput and errors vs the
    targets, where the time goes, CPU and memory per service, Feast's server as a peer."""
    if requests < concurrency:
        raise typer.BadParameter(
            f"--requests ({requests}) must be at least --concurrency ({concurrency})"
        )
    to_stdout = json_path == "-"
    # Captured output (make bench > log) gets room for the table's one-line rows.
    stream = sys.stderr if to_stdout else sys.stdout
    console = Console(stderr=to_stdout, width=None if stream.isatty() else 120)
    err = Console(stderr=True)
    settings = get_stack_settings()
    try:
        with _stdout_to_stderr(to_stdout), exit_on_error():
            hey = ensure_hey(install)
            if url is None:
                ensure_champion(settings, data_dir)
                url = gateway_url(settings)
            base_url = url.rstrip("/")
            # The local stack's gateway (started here, or named by --url): its processes
            # are probed and the peer runs beside it.
            local = base_url == gateway_url(settings).rstrip("/") and bool(local_pids(settings))
            health = check_gateway(base_url)
            vehicle_id = pick_vehicle_id(base_url)
            batch = batch_vehicles(data_dir)
            scenarios = make_scenarios(
                vehicle_id=vehicle_id,
                batch=batch,
                requests=requests,
                batch_requests=batch_requests,
                concurrency=concurrency,
                warmup=warmup,
            )
            probe = ProcessProbe(local_pids(settings)) if local else None
            idle = probe.rss_mb() if probe else {}
            load_before = os.getloadavg()[0]
            results = []
            with tempfile.TemporaryDirectory(prefix="vroom-bench-") as workdir:
                for scenario in scenarios:
                    console.print(
                        f"[dim]{scenario.name}: {scenario.sent} requests "
                        f"(+{scenario.warmup} warm-up)[/dim]"
                    )
                    result = run_scenario(
                        hey, base_url, scenario, Path(workdir), probe=probe, metrics_url=base_url
                    )
                    results.append(result)
                if local and peer:
                    console.print("[dim]starting feast serve as the online-lookup peer[/dim]")
                    results += run_peer(
                        hey,
                        settings,
                        Path(workdir),
                        vehicle_id=vehicle_id,
                        requests=requests,
                        concurrency=concurrency,
                        warmup=warmup,
                        idle=idle,
                        console=console,
                    )
    except BenchError as exc:
        err.print(Text(f"error: {exc}", style="bold red"), soft_wrap=True)
        raise typer.Exit(1) from exc

    console.print(results_table(results, base_url))
    for extra in (stages_table(results), cpu_table(results), memory_table(idle, results)):
        if extra is not None:
            console.print(extra)
    document = report(results, base_url, health, load_before, idle)
    text = json.dumps(document, indent=2)
    if to_stdout:
        sys.stdout.write(text + "\n")
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(json_path) if json_path else settings.state_dir / "bench" / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    console.print(f"results: {path}")


#: The local services whose processes are probed, by their stack names.
PROBED_SERVICES: Final = ("gateway", "features", "predictor", "redis")


def local_pids(settings: StackSettings) -> dict[str, int]:
    """Pids of the local stack's request-path services that run."""
    stack = stack_status(settings, PROBED_SERVICES)
    return {name: pid for name in PROBED_SERVICES if (pid := stack.service(name).pid) is not None}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_peer(
    hey: str,
    settings: StackSettings,
    workdir: Path,
    *,
    vehicle_id: int,
    requests: int,
    concurrency: int,
    warmup: int,
    idle: dict[str, float],
    console: Console,
) -> list[Result]:
    """Our online lookup and ``feast serve``'s, for the same vehicle, turn by turn; first
    checks that both answer the same features.

    Raises:
        BenchError: Feast's server does not start, or the two answers differ.
    """
    feast = FeastPeer(settings, free_port())
    ours_url = settings.feature_service_url.rstrip("/")
    try:
        feast.start()
    except RuntimeError as exc:
        raise BenchError(str(exc)) from exc
    try:
        ours = httpx.post(
            f"{ours_url}/v1/features/online", json={"vehicle_ids": [vehicle_id]}, timeout=10
        ).json()["found"][0]
        theirs = feast_values(
            httpx.post(f"{feast.url}/get-online-features", json=feast_request(vehicle_id)).json()
        )
        differ = {k: (ours[k], v) for k, v in theirs.items() if k in ours and ours[k] != v}
        if differ or not theirs:
            raise BenchError(f"feast serve and our feature service disagree: {differ}")
        pids = {**local_pids(settings), **feast.pids}
        probe = ProcessProbe(
            {k: v for k, v in pids.items() if k in (FEATURES, "redis") or k.startswith(FEAST)}
        )
        idle.update({k: v for k, v in probe.rss_mb().items() if k not in idle})
        results = []
        for scenario in peer_scenarios(
            vehicle_id=vehicle_id, requests=requests, concurrency=concurrency, warmup=warmup
        ):
            base = feast.url if scenario.server == FEAST else ours_url
            console.print(f"[dim]{scenario.name}: {scenario.sent} requests[/dim]")
            results.append(run_scenario(hey, base, scenario, workdir, probe=probe))
        return results
    finally:
        feast.stop()


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
