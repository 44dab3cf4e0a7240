"""What tracing costs on the prediction path: ``POST /predict`` with tracing off (the
default) and on (OTLP to a receiver that keeps nothing), through the real gateway,
feature service and predictor of a local stack.

First, in-process, what tracing adds to a request while off (our spans, the log
processor). Then a stack in a state directory and on ports of its own (a running
``vroom up`` is left alone; it trains a synthetic champion on first use): each round
restarts it in one mode, warms up, then times sequential requests with a keep-alive
client; modes alternate round by round so the machine's drift hits both. Prints each round and
the medians (figures to read, not a pass/fail gate: the machine is noisy).

    uv run python benchmarks/tracing.py --rounds 3 --requests 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import structlog
from timing import latencies_ms, percentile, print_round_medians

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.observability.otlp import otlp_receiver
from tests.ports import private_stack_settings
from vroom_cli.bench import SAMPLE_VEHICLE
from vroom_cli.run import ensure_champion, gateway_url
from vroom_cli.stack import down, up
from vroom_cli.stack.settings import StackSettings
from vroom_common.logs import add_trace_ids
from vroom_common.tracing import span, tracing_enabled


@contextmanager
def mode(settings: StackSettings, traced: bool, endpoint: str) -> Iterator[str]:
    """The prediction path restarted with tracing ``traced``; yields the gateway URL."""
    down(settings)
    variables = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    for name, value in variables.items():
        if traced:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    up(settings)  # the whole stack: supervisord hands the new environment to each service
    yield gateway_url(settings)


def off_path_cost(calls: int = 200_000) -> None:
    """What tracing adds per request while off, in-process: the spans a prediction opens
    (four across the three services) and the log processor (per log line)."""
    if tracing_enabled():
        raise SystemExit("unset OTEL_TRACES_EXPORTER: this measures tracing while off")

    def spans() -> None:
        with span("serialization", rows=1):
            pass

    event: structlog.types.EventDict = {"event": "x"}
    for name, call in (
        ("span", spans),
        ("log processor", lambda: add_trace_ids(None, "", event)),
    ):
        micros = statistics.median(latencies_ms(call, calls, warmup=1000)) * 1000
        print(f"tracing off, {name:<14}: median {micros:.2f} µs per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--off-only", action="store_true", help="Only the in-process cost of tracing while off."
    )
    args = parser.parse_args()
    off_path_cost()
    if args.off_only:
        return
    os.environ.setdefault("VROOM_LOG_FORMAT", "json")
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="vroom-bench-tracing-") as tmp, otlp_receiver() as sink:
        settings = private_stack_settings(Path(tmp) / "state")
        try:
            ensure_champion(settings)
            for round_number in range(1, args.rounds + 1):
                for name in ("off", "on"):
                    with (
                        mode(settings, name == "on", sink.endpoint) as url,
                        httpx.Client(base_url=url, timeout=30) as client,
                    ):
                        samples = latencies_ms(
                            lambda: client.post("/predict", json=SAMPLE_VEHICLE).raise_for_status(),
                            args.requests,
                            warmup=args.warmup,
                        )
                    median, p99 = statistics.median(samples), percentile(samples, 0.99)
                    results[name].append((median, p99))
                    print(
                        f"round {round_number} tracing {name:<3}: median {median:.3f} ms, "
                        f"p99 {p99:.3f} ms (n={len(samples)})",
                        flush=True,
                    )
        finally:
            down(settings)
        print(f"spans received while on: {len(sink.spans())}")
    print_round_medians("tracing", results)


if __name__ == "__main__":
    main()
