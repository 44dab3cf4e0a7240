"""The gateway's side of the prediction log: what each sampled request was answered,
appended to ``Stream.PREDICTIONS`` for the materializer to drain to Parquet.

The request path only samples and keeps a reference to what it already has (the
feature matrix, the prediction): :meth:`PredictionLog.record` costs about a microsecond
and never waits on Redis. Every ``FLUSH_S`` the held requests are encoded
(``vroom_features.prediction_log``) and appended in one pipeline, the stream capped at
``stream_maxlen``. While Redis is away they stay held, up to ``prediction_log_buffer``
requests; past that new ones are dropped and counted, never a failed prediction. A
flush cut off half-way may append a request twice; the drained log keeps both rows
(different entries), a rare duplicate rather than a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import redis
import redis.asyncio as aioredis
import structlog

from vroom_common.events import Stream
from vroom_common.observability import HttpMetrics, current_request_id
from vroom_features.contract import INTERVAL_LEVELS
from vroom_features.prediction_log import RECORD_FIELD, encode_record
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

#: Seconds between two flushes to Redis.
FLUSH_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class _Served:
    request_id: str | None
    served_at: float
    route: str
    latency_ms: float
    features: npt.NDArray[np.float32]
    prediction: Prediction
    level: float
    vehicle_ids: list[int] | None

    def encode(self) -> bytes:
        prediction = self.prediction
        lower = upper = None
        level: float | None = None
        if prediction.lower is not None and prediction.upper is not None:
            column = INTERVAL_LEVELS.index(self.level)
            lower, upper, level = (
                prediction.lower[:, column],
                prediction.upper[:, column],
                self.level,
            )
        return encode_record(
            request_id=self.request_id,
            served_at=self.served_at,
            route=self.route,
            model_version=prediction.model_version,
            role=prediction.role,
            latency_ms=self.latency_ms,
            features=self.features,
            predictions=prediction.values,
            vehicle_ids=self.vehicle_ids,
            interval_level=level,
            lower=lower,
            upper=upper,
        )


class PredictionLog:
    """Samples served predictions and appends them to the stream in the background."""

    def __init__(
        self, settings: GatewaySettings, client: aioredis.Redis, metrics: HttpMetrics
    ) -> None:
        self.client = client
        self.sample = settings.prediction_log_sample
        self.capacity = settings.prediction_log_buffer
        self.maxlen = settings.stream_maxlen
        self._held: list[_Served] = []
        self._random = random.Random()  # noqa: S311 - sampling, not a secret
        self._task: asyncio.Task[None] | None = None
        outcomes = metrics.counter(
            "vroom_prediction_log_requests",
            "Prediction requests by what the prediction log did with them: logged "
            "(appended to the stream), dropped (Redis away and the buffer full).",
            ["outcome"],
        )
        self._logged = outcomes.labels("logged")
        self._dropped = outcomes.labels("dropped")

    def record(
        self,
        route: str,
        features: npt.NDArray[np.float32],
        prediction: Prediction,
        *,
        level: float,
        started: float,
        vehicle_ids: list[int] | None = None,
    ) -> None:
        """Keep a served request (sampled at ``prediction_log_sample``) for the next flush;
        ``started``: its ``time.perf_counter()`` start."""
        if self.sample < 1.0 and self._random.random() >= self.sample:
            return
        if len(self._held) >= self.capacity:
            self._dropped.inc()
            return
        self._held.append(
            _Served(
                request_id=current_request_id(),
                served_at=time.time(),
                route=route,
                latency_ms=(time.perf_counter() - started) * 1000,
                features=features,
                prediction=prediction,
                level=level,
                vehicle_ids=vehicle_ids,
            )
        )

    async def flush(self) -> int:
        """Append the held requests to the stream; how many. On a Redis failure they stay
        held (as many as fit) and the error is raised."""
        batch, self._held = self._held, []
        if not batch:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for served in batch:
            pipe.xadd(
                Stream.PREDICTIONS,
                {RECORD_FIELD: served.encode()},
                maxlen=self.maxlen,
                approximate=True,
            )
        try:
            await pipe.execute()
        except (redis.RedisError, OSError):
            room = max(self.capacity - len(self._held), 0)
            self._dropped.inc(max(len(batch) - room, 0))
            self._held = batch[:room] + self._held
            raise
        self._logged.inc(len(batch))
        return len(batch)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except (redis.RedisError, OSError) as exc:
                log.warning(
                    "prediction log unavailable; holding", held=len(self._held), error=str(exc)
                )

    def start(self) -> None:
        if self.sample > 0:
            self._task = asyncio.create_task(self._follow(), name="prediction-log")

    async def stop(self) -> None:
        """Stop flushing in the background, then flush what is held once more."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(redis.RedisError, OSError):
            await self.flush()
