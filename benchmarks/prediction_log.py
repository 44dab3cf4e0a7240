"""What the prediction log costs on the prediction path: ``POST /predict`` with the log
off (``VROOM_PREDICTION_LOG_SAMPLE=0``) and logging every request (``1``), through the
real gateway, feature service, predictor and materializer of a local stack.

First, in-process, what the request path pays per logged request (``record``) and what
the background flush pays to encode one (off the request path). Then a stack in a state
directory and on ports of its own: each round restarts it in one mode, warms up, times
sequential requests with a keep-alive client, and (logging on) counts the rows the
materializer drained to Parquet; modes alternate within a round, and which goes first
alternates between rounds, so the machine's drift hits both. Prints each round and
the medians (figures to read, not a pass/fail gate).

    uv run python benchmarks/prediction_log.py --rounds 4 --requests 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from timing import latencies_ms, percentile, print_round_medians

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ports import private_stack_settings
from vroom_cli.bench import SAMPLE_VEHICLE
from vroom_cli.run import ensure_champion, gateway_url
from vroom_cli.stack import down, up
from vroom_cli.stack.settings import StackSettings
from vroom_common.observability import HttpMetrics
from vroom_features import FEATURE_NAMES
from vroom_features.contract import INTERVAL_LEVELS
from vroom_features.prediction_files import read_log
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.prediction_log import PredictionLog
from vroom_gateway.settings import GatewaySettings


def in_process_cost(calls: int = 100_000) -> None:
    """``record`` (the request path) and one record's encoding (the flush), per call."""
    bounds = np.ones((1, len(INTERVAL_LEVELS)), dtype=np.float32)
    prediction = Prediction([2.5], "7", "run", lower=bounds, upper=bounds + 1)
    features = np.ones((1, len(FEATURE_NAMES)), dtype=np.float32)
    settings = GatewaySettings().with_overrides(prediction_log_buffer=10 * calls)
    log = PredictionLog(settings, None, HttpMetrics("bench"))  # type: ignore[arg-type]

    def record() -> None:
        log.record("/predict", features, prediction, level=0.8, started=0.0)

    micros = statistics.median(latencies_ms(record, calls, warmup=1000)) * 1000
    print(f"request path, record():  median {micros:.2f} µs per request")
    held = log._held[0]
    micros = statistics.median(latencies_ms(held.encode, calls, warmup=1000)) * 1000
    print(f"flush, encode one record: median {micros:.2f} µs per request (background)")


def restart(settings: StackSettings, sample: float) -> str:
    """The stack restarted with the gateway sampling ``sample`` of the requests (the
    services get their environment from the settings, not from this process)."""
    down(settings)
    up(settings.with_overrides(prediction_log_sample=sample))
    return gateway_url(settings)


def drained_rows(settings: StackSettings, expected: int, timeout_s: float = 60) -> int:
    """Rows in the Parquet log once it holds ``expected`` (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    rows = len(read_log(settings.prediction_log_path))
    while rows < expected and time.monotonic() < deadline:
        time.sleep(1)
        rows = len(read_log(settings.prediction_log_path))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--in-process-only", action="store_true", help="Only the in-process costs.")
    args = parser.parse_args()
    in_process_cost()
    if args.in_process_only:
        return
    os.environ.setdefault("VROOM_LOG_FORMAT", "json")
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="vroom-bench-prediction-log-") as tmp:
        settings = private_stack_settings(Path(tmp) / "state")
        logged = 0
        try:
            ensure_champion(settings)
            for round_number in range(1, args.rounds + 1):
                # Which mode goes first alternates too, so a drift within a round is
                # not taken for the log's cost.
                order = ("off", "on") if round_number % 2 else ("on", "off")
                for name in order:
                    url = restart(settings, 1.0 if name == "on" else 0.0)
                    with httpx.Client(base_url=url, timeout=30) as client:
                        samples = latencies_ms(
                            lambda c=client: c.post(
                                "/predict", json=SAMPLE_VEHICLE
                            ).raise_for_status(),
                            args.requests,
                            warmup=args.warmup,
                        )
                    median, p99 = statistics.median(samples), percentile(samples, 0.99)
                    results[name].append((median, p99))
                    line = (
                        f"round {round_number} log {name:<3}: median {median:.3f} ms, "
                        f"p99 {p99:.3f} ms (n={len(samples)})"
                    )
                    if name == "on":
                        logged += args.requests + args.warmup
                        line += f"; rows in Parquet {drained_rows(settings, logged)}/{logged}"
                    print(line, flush=True)
        finally:
            down(settings)
    print_round_medians("log", results)


if __name__ == "__main__":
    main()
