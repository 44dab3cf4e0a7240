"""The prediction log's drain on a real Redis: what the gateway appends ends up in
Parquet once, a drain that dies before its acknowledgement loses nothing, a bad entry
never holds the stream back, and the gateway holds its records while Redis is away."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import redis

from tests.materializer.conftest import wait_for
from vroom_cli.stack.settings import StackSettings
from vroom_common.events import Stream
from vroom_common.observability import HttpMetrics
from vroom_common.redis_clients import async_redis_client
from vroom_features import FEATURE_NAMES
from vroom_features.prediction_files import read_log
from vroom_features.prediction_log import RECORD_FIELD
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.prediction_log import PredictionLog
from vroom_materializer.options import MaterializerOptions
from vroom_materializer.prediction_log import PredictionLogDrain

pytestmark = pytest.mark.integration


def _options(consumer: str = "drain-a", **changes: object) -> MaterializerOptions:
    fields: dict[str, object] = {"prediction_log_flush_s": 0.2, "min_idle_ms": 60_000}
    return MaterializerOptions(consumer=consumer, **(fields | changes))


@contextmanager
def running(drain: PredictionLogDrain) -> Iterator[PredictionLogDrain]:
    thread = threading.Thread(target=drain.run, daemon=True)
    thread.start()
    try:
        yield drain
    finally:
        drain.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the drain did not stop"


def _prediction(rows: int, version: str = "4") -> Prediction:
    bounds = np.tile(np.asarray([0.5, 1.0, 1.5, 2.0], dtype=np.float32), (rows, 1))
    return Prediction(
        values=[float(n) for n in range(rows)],
        model_version=version,
        run_id="run",
        lower=bounds,
        upper=bounds + 3,
        role="candidate",
    )


def _log_requests(settings: StackSettings, requests: int, rows: int = 2) -> None:
    """``requests`` predictions of ``rows`` vehicles through the gateway's log, flushed."""
    features = np.ones((rows, len(FEATURE_NAMES)), dtype=np.float32)

    async def scenario() -> None:
        client = async_redis_client(settings)
        log = PredictionLog(settings, client, HttpMetrics("gateway"))
        try:
            for _ in range(requests):
                log.record("/predict/batch", features, _prediction(rows), level=0.9, started=0.0)
            assert await log.flush() == requests
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_appended_predictions_are_drained_to_parquet_once(
    isolated_settings: StackSettings, redis_client: redis.Redis
) -> None:
    _log_requests(isolated_settings, requests=30, rows=2)
    root = isolated_settings.prediction_log_path
    with running(PredictionLogDrain(isolated_settings, _options())):
        wait_for(lambda: len(read_log(root)) == 60, 20, "60 logged rows")
    frame = read_log(root)
    assert frame["log_id"].nunique() == 30
    assert set(frame["role"]) == {"candidate"}
    assert set(frame["model_version"]) == {"4"}
    # The level's column of the bounds: 0.9 is the third of INTERVAL_LEVELS.
    assert set(frame["interval_lower"]) == {1.5}
    assert set(frame["interval_upper"]) == {4.5}
    assert set(frame["interval_level"]) == {0.9}
    assert root.is_relative_to(isolated_settings.offline_store_path.parent)
    summary = redis_client.xinfo_groups(Stream.PREDICTIONS)[0]
    assert summary["pending"] == 0
    assert summary["lag"] == 0
    assert redis_client.xlen(Stream.PREDICTIONS) == 0  # written entries are deleted


def test_a_drain_that_dies_before_the_ack_loses_nothing(
    isolated_settings: StackSettings, redis_client: redis.Redis
) -> None:
    _log_requests(isolated_settings, requests=700, rows=1)  # more than one read's worth
    root = isolated_settings.prediction_log_path

    # The first drain reads everything and dies before writing (no flush, no ack).
    doomed = PredictionLogDrain(isolated_settings, _options(prediction_log_flush_s=3600))
    doomed._ensure_group()
    doomed._read(">", block_ms=None)
    doomed._read(">", block_ms=None)
    assert redis_client.xinfo_groups(Stream.PREDICTIONS)[0]["pending"] == 700
    assert read_log(root).empty

    # Restarted under the same name, it writes its own unacknowledged entries first.
    with running(PredictionLogDrain(isolated_settings, _options())):
        wait_for(lambda: len(read_log(root)) == 700, 20, "700 recovered rows")
    assert redis_client.xinfo_groups(Stream.PREDICTIONS)[0]["pending"] == 0


def test_a_replaced_consumer_s_idle_entries_are_taken_over(
    isolated_settings: StackSettings, redis_client: redis.Redis
) -> None:
    _log_requests(isolated_settings, requests=5, rows=3)
    gone = PredictionLogDrain(isolated_settings, _options(consumer="old-pod"))
    gone._ensure_group()
    gone._read(">", block_ms=None)
    root = isolated_settings.prediction_log_path
    with running(PredictionLogDrain(isolated_settings, _options("new-pod", min_idle_ms=0))):
        wait_for(lambda: len(read_log(root)) == 15, 20, "15 claimed rows")


def test_an_entry_that_is_not_a_record_is_dropped_not_blocking(
    isolated_settings: StackSettings, redis_client: redis.Redis
) -> None:
    redis_client.xadd(Stream.PREDICTIONS, {RECORD_FIELD: b'{"route": "/predict"}'})
    redis_client.xadd(Stream.PREDICTIONS, {"other": b"x"})
    _log_requests(isolated_settings, requests=2, rows=1)
    root = isolated_settings.prediction_log_path
    drain = PredictionLogDrain(isolated_settings, _options())
    with running(drain):
        wait_for(lambda: len(read_log(root)) == 2, 20, "the 2 good rows")
        wait_for(
            lambda: redis_client.xinfo_groups(Stream.PREDICTIONS)[0]["pending"] == 0,
            10,
            "every entry acknowledged",
        )
    assert drain.stats["invalid"] == 2


def test_the_gateway_holds_its_records_while_redis_is_away(
    isolated_settings: StackSettings, redis_client: redis.Redis
) -> None:
    away = isolated_settings.with_overrides(
        redis_url="redis://127.0.0.1:1/0", redis_retries=0, prediction_log_buffer=3
    )
    metrics = HttpMetrics("gateway")
    features = np.ones((1, len(FEATURE_NAMES)), dtype=np.float32)

    async def scenario() -> None:
        dead = async_redis_client(away)
        live = async_redis_client(isolated_settings)
        log = PredictionLog(away, dead, metrics)
        try:
            for _ in range(5):
                log.record("/predict", features, _prediction(1), level=0.8, started=0.0)
            with pytest.raises((redis.RedisError, OSError)):
                await log.flush()
            log.client = live  # Redis is back
            assert await log.flush() == 3
        finally:
            await dead.aclose()
            await live.aclose()

    asyncio.run(scenario())
    sample = metrics.registry.get_sample_value
    assert sample("vroom_prediction_log_requests_total", {"outcome": "dropped"}) == 2
    assert sample("vroom_prediction_log_requests_total", {"outcome": "logged"}) == 3
    assert redis_client.xlen(Stream.PREDICTIONS) == 3
