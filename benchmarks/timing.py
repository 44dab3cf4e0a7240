"""Timing helpers shared by the benchmarks: repeated calls, medians and tails."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def latencies_ms(call: Callable[[], object], calls: int, warmup: int = 20) -> list[float]:
    """Wall time in ms of each of ``calls`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summary(samples: list[float]) -> str:
    """``median … ms, p99 … ms, max … ms`` of the samples."""
    return (
        f"median {statistics.median(samples):.3f} ms, p99 {percentile(samples, 0.99):.3f} ms, "
        f"max {max(samples):.3f} ms (n={len(samples)})"
    )


def print_round_medians(label: str, results: dict[str, list[tuple[float, float]]]) -> None:
    """Per mode of an A/B benchmark, the median over rounds of each round's (median, p99)."""
    for name, rounds in results.items():
        medians = [median for median, _ in rounds]
        p99s = [p99 for _, p99 in rounds]
        print(
            f"{label} {name:<3}: median of round medians {statistics.median(medians):.3f} ms, "
            f"median p99 {statistics.median(p99s):.3f} ms over {len(rounds)} rounds"
        )
