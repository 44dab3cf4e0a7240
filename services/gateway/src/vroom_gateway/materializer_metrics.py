"""The materializer's backlog as gauges on the gateway's ``/metrics``.

The materializer serves no HTTP (its health is a heartbeat file), but its work queue
is a Redis stream every gateway already talks to: the consumer group's lag and pending
entries, the dead-letter stream's length, and the backlog of the prediction log's drain
are read here every ``REFRESH_S`` and exported for the chart's alerts. Every gateway
exports the same numbers (the alerts take the max).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import redis
import redis.asyncio as aioredis
import structlog

from vroom_common.events import MATERIALIZER_GROUP, PREDICTION_LOG_GROUP, Stream, text
from vroom_common.observability import HttpMetrics

log = structlog.get_logger(__name__)

#: Seconds between two reads of the streams.
REFRESH_S: Final = 15.0


class MaterializerGauges:
    """``vroom_materializer_lag_entries``, ``vroom_materializer_pending_entries``,
    ``vroom_materializer_dead_letters`` and ``vroom_prediction_log_backlog_entries``,
    refreshed in the background."""

    def __init__(self, client: aioredis.Redis, metrics: HttpMetrics) -> None:
        self.client = client
        self._lag = metrics.gauge(
            "vroom_materializer_lag_entries",
            "Vehicle events not yet delivered to the materializer's consumer group.",
            [],
        )
        self._pending = metrics.gauge(
            "vroom_materializer_pending_entries",
            "Vehicle events delivered to a materializer but not yet acknowledged.",
            [],
        )
        self._dead = metrics.gauge(
            "vroom_materializer_dead_letters",
            "Entries in the vehicle events' dead-letter stream.",
            [],
        )
        self._log_backlog = metrics.gauge(
            "vroom_prediction_log_backlog_entries",
            "Logged prediction requests not yet written to Parquet by the materializer's "
            "drain (undelivered + unacknowledged).",
            [],
        )
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        lag, pending = await self._behind(Stream.VEHICLES, MATERIALIZER_GROUP)
        self._lag.set(lag)
        self._pending.set(pending)
        self._dead.set(int(await self.client.xlen(Stream.VEHICLES_DEAD_LETTER)))
        self._log_backlog.set(sum(await self._behind(Stream.PREDICTIONS, PREDICTION_LOG_GROUP)))

    async def _behind(self, stream: Stream, name: str) -> tuple[int, int]:
        """(undelivered, unacknowledged) entries of ``stream`` for the group ``name``; a
        stream or group not there yet has nothing behind, and a group not created yet
        on a stream that holds entries has all of them undelivered."""
        try:
            groups = await self.client.xinfo_groups(stream)
        except redis.ResponseError:  # no stream
            return 0, 0
        for group in groups:
            if text(group["name"]) == name:
                return int(group.get("lag") or 0), int(group.get("pending") or 0)
        return int(await self.client.xlen(stream)), 0

    async def _follow(self) -> None:
        while True:
            try:
                await self.refresh()
            except (redis.RedisError, OSError) as exc:  # keep the last values
                log.warning("materializer backlog unavailable", error=str(exc))
            await asyncio.sleep(REFRESH_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="materializer-gauges")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
