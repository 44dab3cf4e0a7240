"""``POST /benchmark`` and ``/benchmark/id``: latency of the real serving path, measured
from inside the gateway (feature step, then predictor step, per iteration).

A time budget (``benchmark_budget_s``) stops the loop early and ``n_iterations`` in the
answer is what ran; a gateway runs ``benchmark_max_concurrent`` benchmarks at once (more
get a 429) and each client has its own rate limit, so the endpoints cannot be used to
keep the CPUs busy.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends

from vroom_common.errors import InvalidInput
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.deps import Resources, ResourcesDep
from vroom_gateway.protection import rate_limited
from vroom_gateway.routes.predict import online_matrix
from vroom_gateway.schemas import BenchmarkIdRequest, BenchmarkRequest, BenchmarkResult

#: Benchmarks are authenticated and have their own, tighter, rate limit.
router = APIRouter(
    tags=["benchmark"], dependencies=[Depends(rate_limited("benchmark", benchmark=True))]
)

FeatureStep = Callable[[], Awaitable[npt.NDArray[np.float32]]]


def _ms(seconds: list[float]) -> npt.NDArray[np.float64]:
    return np.asarray(seconds, dtype=np.float64) * 1000.0


async def run_benchmark(
    resources: Resources,
    features: FeatureStep,
    n_iterations: int,
    source: Literal["raw", "online_store"],
) -> BenchmarkResult:
    """Time ``n_iterations`` of feature step + predictor step (fewer if the budget runs
    out; at least one always runs, and its errors are the request's errors)."""
    async with resources.benchmark_slots.hold():
        feature_s, predict_s, last = await _time_loop(resources, features, n_iterations)
    if last is None:
        raise InvalidInput("n_iterations: must be at least 1")
    resources.served_version.record(last.model_version)
    features_ms, predict_ms = _ms(feature_s), _ms(predict_s)
    total = features_ms + predict_ms
    p50, p95, p99 = np.percentile(total, [50, 95, 99])
    return BenchmarkResult(
        n_iterations=len(total),
        avg_latency_ms=round(float(total.mean()), 4),
        p50_latency_ms=round(float(p50), 4),
        p95_latency_ms=round(float(p95), 4),
        p99_latency_ms=round(float(p99), 4),
        model_version=last.model_version,
        source=source,
        avg_features_ms=round(float(features_ms.mean()), 4),
        avg_predict_ms=round(float(predict_ms.mean()), 4),
    )


async def _time_loop(
    resources: Resources, features: FeatureStep, n_iterations: int
) -> tuple[list[float], list[float], Prediction | None]:
    deadline = time.perf_counter() + resources.settings.benchmark_budget_s
    feature_s: list[float] = []
    predict_s: list[float] = []
    last: Prediction | None = None
    for _ in range(n_iterations):
        started = time.perf_counter()
        matrix = await features()
        computed = time.perf_counter()
        last = await resources.predictor.predict(matrix)
        done = time.perf_counter()
        feature_s.append(computed - started)
        predict_s.append(done - computed)
        if done >= deadline:
            break
    return feature_s, predict_s, last


@router.post("/benchmark")
async def benchmark(body: BenchmarkRequest, resources: ResourcesDep) -> BenchmarkResult:
    """Latency of the raw path: on-the-fly features for ``vehicle``, then the predictor."""

    async def compute() -> npt.NDArray[np.float32]:
        return await resources.features.compute([body.vehicle])

    return await run_benchmark(resources, compute, body.n_iterations, "raw")


@router.post("/benchmark/id")
async def benchmark_by_id(body: BenchmarkIdRequest, resources: ResourcesDep) -> BenchmarkResult:
    """Latency of the online-store path: features by id, then the predictor; 404 when
    the online store does not hold the vehicle."""

    async def lookup() -> npt.NDArray[np.float32]:
        return await online_matrix(resources.features, body.vehicle_id)

    return await run_benchmark(resources, lookup, body.n_iterations, "online_store")
