"""What ``vroom bench`` measures besides latency: where the time goes and what it costs.

- :func:`stage_means`: the gateway's per-stage means over a run, from the difference of
  two scrapes of its ``/metrics`` (``vroom_gateway_stage_seconds`` and the request
  histogram), so no request carries anything extra;
- :class:`ProcessProbe`: CPU seconds (user + system, from the kernel) and resident
  memory of each local service's process, sampled while a run goes on;
- :class:`FeastPeer`: Feast's own feature server (``feast serve``) on the same Redis,
  registry and feature view, the peer our online lookup is compared with.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

from vroom_cli.stack.settings import StackSettings
from vroom_common.observability import REQUEST_METRIC
from vroom_features.online import FEATURE_REFS
from vroom_gateway.metrics import STAGE_METRIC, STAGES

#: Seconds between two memory samples during a run.
RSS_SAMPLE_S: Final = 0.05


# --- the gateway's stages ----------------------------------------------------------------

Sums = dict[tuple[str, ...], tuple[float, float]]


def scrape(url: str) -> Sums:
    """``(metric, route[, stage]) -> (sum, count)`` of the gateway's stage and request
    histograms; empty when ``/metrics`` does not answer or holds neither."""
    try:
        response = httpx.get(f"{url}/metrics", timeout=10)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    return scrape_text(response.text)


def scrape_text(exposition: str) -> Sums:
    """:func:`scrape` of a Prometheus text exposition."""
    sums: dict[tuple[str, ...], list[float]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name not in (STAGE_METRIC, REQUEST_METRIC):
            continue
        for sample in family.samples:
            suffix = sample.name.removeprefix(family.name)
            if suffix not in ("_sum", "_count"):
                continue
            labels = sample.labels
            if family.name == REQUEST_METRIC and labels.get("method") != "POST":
                continue
            key = (family.name, labels.get("route", ""), labels.get("stage", ""))
            pair = sums.setdefault(key, [0.0, 0.0])
            pair[0 if suffix == "_sum" else 1] += sample.value
    return {key: (total, count) for key, (total, count) in sums.items()}


def stage_means(before: Sums, after: Sums, route: str) -> dict[str, float] | None:
    """Mean ms per request of each stage of ``route`` between two scrapes, ``server``
    (the gateway's whole handling) and ``other`` (server minus the stages: middleware,
    routing, writing the response); ``None`` without the gateway's stage histogram."""

    def mean(metric: str, stage: str = "") -> float | None:
        key = (metric, route, stage)
        total, count = after.get(key, (0.0, 0.0))
        total0, count0 = before.get(key, (0.0, 0.0))
        return (total - total0) / (count - count0) * 1000 if count > count0 else None

    stages = {stage: mean(STAGE_METRIC, stage) for stage in STAGES}
    server = mean(REQUEST_METRIC)
    if server is None or any(value is None for value in stages.values()):
        return None
    means = {stage: round(value, 3) for stage, value in stages.items() if value is not None}
    means["server"] = round(server, 3)
    means["other"] = round(server - sum(means[stage] for stage in STAGES), 3)
    return means


# --- processes ---------------------------------------------------------------------------


@dataclass
class ProcessProbe:
    """CPU and memory of named processes (a vanished one is left out)."""

    pids: Mapping[str, int]
    _processes: dict[str, psutil.Process] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                self._processes[name] = psutil.Process(pid)

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds each process has used so far."""
        used = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used[name] = times.user + times.system
        return used

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of each process now (MiB)."""
        sizes = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.Error):
                sizes[name] = round(process.memory_info().rss / 2**20, 1)
        return sizes

    @contextlib.contextmanager
    def peak_rss(self) -> Iterator[dict[str, float]]:
        """The largest resident memory of each process while the block runs (MiB),
        sampled every ``RSS_SAMPLE_S`` on a thread; filled in when the block ends."""
        peaks: dict[str, float] = {}
        stop = threading.Event()

        def sample() -> None:
            while True:
                for name, size in self.rss_mb().items():
                    peaks[name] = max(peaks.get(name, 0.0), size)
                if stop.wait(RSS_SAMPLE_S):
                    return

        thread = threading.Thread(target=sample, name="bench-rss", daemon=True)
        thread.start()
        try:
            yield peaks
        finally:
            stop.set()
            thread.join()


def cpu_ms_per_request(
    before: Mapping[str, float], after: Mapping[str, float], requests: int
) -> dict[str, float]:
    """Each process's CPU milliseconds per request between two readings."""
    return {
        name: round((after[name] - before[name]) * 1000 / requests, 3)
        for name in after
        if name in before and requests > 0
    }


# --- the peer: Feast's own feature server ------------------------------------------------


def feast_request(vehicle_id: int) -> dict[str, Any]:
    """``POST /get-online-features`` for one vehicle: every feature of the view."""
    return {"features": list(FEATURE_REFS), "entities": {"vehicle_id": [vehicle_id]}}


def feast_values(answer: Mapping[str, Any]) -> dict[str, Any]:
    """Feature name -> the first entity's value in a ``/get-online-features`` answer."""
    names = answer["metadata"]["feature_names"]
    results = answer["results"]
    return {name: result["values"][0] for name, result in zip(names, results, strict=True)}


class FeastPeer:
    """``feast serve`` on a repo of its own: the project's ``feature_store.yaml`` with
    the registry and Redis of ``settings`` (what every service opens)."""

    def __init__(self, settings: StackSettings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._repo: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        """Start it and wait until it answers.

        Raises:
            RuntimeError: it exits or does not answer within ``timeout_s``.
        """
        from vroom_features.store import feast_yaml  # noqa: PLC0415 (Feast, only here)

        feast = shutil.which("feast") or str(Path(sys.executable).parent / "feast")
        self._repo = tempfile.TemporaryDirectory(prefix="vroom-bench-feast-")
        repo = Path(self._repo.name)
        (repo / "feature_store.yaml").write_text(yaml.safe_dump(feast_yaml(self.settings)))
        log = (repo / "serve.log").open("wb")
        command = [feast, "-c", str(repo), "serve", "-p", str(self.port), "--no-access-log"]
        # Feast's worker recycling (every 1,000 requests) is turned off: a restart
        # mid-run would be charged to the peer as seconds of latency and errors.
        command += ["--max-requests", "0"]
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"feast serve exited with {self.process.returncode}: "
                    f"{(repo / 'serve.log').read_text()[-500:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"feast serve did not answer on {self.url} in {timeout_s:g} s")

    @property
    def pids(self) -> dict[str, int]:
        """The server process and the workers it forked."""
        if self.process is None:
            return {}
        found = {"feast serve": self.process.pid}
        with contextlib.suppress(psutil.Error):
            for number, child in enumerate(psutil.Process(self.process.pid).children(True)):
                found[f"feast serve worker {number + 1}"] = child.pid
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._repo is not None:
            self._repo.cleanup()
            self._repo = None
