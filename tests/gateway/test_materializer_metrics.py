"""The materializer's backlog on the gateway's ``/metrics``, read from the real Redis
streams: undelivered and unacknowledged vehicle events, and dead letters."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.predictor.conftest import Served
from vroom_common import events
from vroom_common.events import MATERIALIZER_GROUP, PREDICTION_LOG_GROUP, Stream
from vroom_common.observability import HttpMetrics
from vroom_common.redis_clients import async_redis_client
from vroom_gateway.materializer_metrics import MaterializerGauges

pytestmark = pytest.mark.integration


def _value(metrics: HttpMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_the_gauges_follow_the_streams(served: Served) -> None:
    sync = redis.Redis.from_url(served.settings.redis_url)
    for key in (Stream.VEHICLES, Stream.VEHICLES_DEAD_LETTER, Stream.PREDICTIONS):
        sync.delete(key)
    metrics = HttpMetrics("gateway")

    async def scenario() -> None:
        client = async_redis_client(served.settings)
        gauges = MaterializerGauges(client, metrics)
        try:
            await gauges.refresh()  # no stream at all: nothing behind
            assert _value(metrics, "vroom_materializer_lag_entries") == 0
            assert _value(metrics, "vroom_materializer_dead_letters") == 0

            sync.xgroup_create(Stream.VEHICLES, MATERIALIZER_GROUP, id="$", mkstream=True)
            for vehicle_id in range(1, 6):
                events.publish(sync, events.VehicleSaved(vehicle_id=vehicle_id))
            # A consumer takes two without acknowledging them; one entry is dead-lettered.
            sync.xreadgroup(MATERIALIZER_GROUP, "test-consumer", {Stream.VEHICLES: ">"}, count=2)
            sync.xadd(Stream.VEHICLES_DEAD_LETTER, {"error": "poison", "source_id": "0-1"})
            await gauges.refresh()
            assert _value(metrics, "vroom_materializer_lag_entries") == 3
            assert _value(metrics, "vroom_materializer_pending_entries") == 2
            assert _value(metrics, "vroom_materializer_dead_letters") == 1

            # The prediction log: 4 logged requests before the drain's group exists are
            # all behind; the drain takes 3 and acknowledges 1.
            assert _value(metrics, "vroom_prediction_log_backlog_entries") == 0
            for n in range(4):
                sync.xadd(Stream.PREDICTIONS, {"record": b"{}", "n": n})
            await gauges.refresh()
            assert _value(metrics, "vroom_prediction_log_backlog_entries") == 4
            sync.xgroup_create(Stream.PREDICTIONS, PREDICTION_LOG_GROUP, id="0")
            taken = sync.xreadgroup(
                PREDICTION_LOG_GROUP, "drain", {Stream.PREDICTIONS: ">"}, count=3
            )
            sync.xack(Stream.PREDICTIONS, PREDICTION_LOG_GROUP, taken[0][1][0][0])
            await gauges.refresh()
            assert _value(metrics, "vroom_prediction_log_backlog_entries") == 3  # 1 + 2
        finally:
            await client.aclose()

    asyncio.run(scenario())
    for key in (Stream.VEHICLES, Stream.VEHICLES_DEAD_LETTER, Stream.PREDICTIONS):
        sync.delete(key)
    sync.close()
