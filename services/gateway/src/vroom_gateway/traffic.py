"""Which model answers a prediction during a rollout, and the live signals it leaves.

The gateway follows the rollout state in Redis (re-read every ``REFRESH_S``; a
restarted gateway reads it before serving, so the weights survive restarts) and, per
request:

- no rollout: the champion answers, nothing else happens (the hot path pays one
  attribute read);
- ``shadow``: the champion answers; a copy goes to the candidate in the background and
  |candidate - champion| is recorded; the candidate's answer is never returned;
- ``canary``/``promoting``: a hash of (rollout id, request key) below ``weight``
  sends the request to the candidate, so the same request lands on the same version
  within a step, and on the candidate in every later step; the rest is answered by the
  champion and mirrored to the candidate, and in ``canary`` a request the candidate
  answers is mirrored to the champion, so both answers are compared for every
  request whatever the split. A candidate call that fails is answered by the champion and
  counted against the candidate: a bad candidate never fails a user's request.

Counts, latencies and disagreements go to :class:`~vroom_rollout.progressive.signals.SignalBatch`,
flushed to Redis every ``FLUSH_S`` for the controller and ``GET /rollout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final, get_args

import numpy as np
import numpy.typing as npt
import redis
import redis.asyncio as aioredis
import structlog

from vroom_common.errors import VroomError
from vroom_common.observability import HttpMetrics
from vroom_features.prediction_log import Role
from vroom_gateway.clients.predictor import Prediction, PredictorClient
from vroom_gateway.metrics import ServedVersion
from vroom_gateway.settings import GatewaySettings
from vroom_rollout.progressive.machine import Phase, RolloutState
from vroom_rollout.progressive.signals import SignalBatch
from vroom_rollout.progressive.store import flush_async, parse_state, signals_key, state_key

log = structlog.get_logger(__name__)

#: Seconds between reads of the rollout state.
REFRESH_S: Final = 0.25
#: Seconds between flushes of the signal counts.
FLUSH_S: Final = 0.5


def share_bucket(rollout_id: str, key: bytes) -> int:
    """0..99, fixed for a (rollout, request key): below ``weight`` means the candidate."""
    digest = hashlib.blake2b(rollout_id.encode() + b"\0" + key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


class Traffic:
    """Routes predictions between the champion and a rollout's candidate."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        champion: PredictorClient,
        candidate: PredictorClient,
        client: aioredis.Redis,
        metrics: HttpMetrics,
        served_version: ServedVersion,
    ) -> None:
        self.settings = settings
        self.champion = champion
        self.candidate = candidate
        self.redis = client
        self.served_version = served_version
        self.state = RolloutState(model_name=settings.model_name)
        self.batch = SignalBatch()
        self._raw: bytes | None = None
        self._mirrors: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._answers = metrics.counter(
            "vroom_rollout_answers",
            "Predictions by the model version and role that answered them "
            "(champion, candidate, fallback: the champion after a failed candidate call).",
            ["model_version", "role"],
        )
        self._mirrored = metrics.counter(
            "vroom_rollout_mirrored",
            "Mirrored candidate calls: sent, failed, or skipped (too many in flight).",
            ["outcome"],
        )
        self._phase = metrics.gauge(
            "vroom_rollout_phase",
            "1 for the phase the model's rollout is in (idle, shadow, canary, promoted, "
            "rolled_back, ...), 0 for the others.",
            ["model_name", "phase"],
        )
        self._weight = metrics.gauge(
            "vroom_rollout_candidate_weight",
            "Percent of the predictions the candidate answers.",
            ["model_name"],
        )
        self._rolled_back_at = metrics.gauge(
            "vroom_rollout_rolled_back_timestamp_seconds",
            "When the model's last rollout was rolled back (Unix time; 0: it was not).",
            ["model_name"],
        )
        self._export(self.state)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the state once (before serving), then follow it in the background."""
        try:
            await self.refresh()
        except (redis.RedisError, OSError) as exc:  # the champion serves until Redis answers
            log.warning("rollout state unavailable at start-up", error=str(exc))
        self._tasks = [
            asyncio.create_task(self._every(REFRESH_S, self.refresh), name="rollout-refresh"),
            asyncio.create_task(self._every(FLUSH_S, self.flush), name="rollout-flush"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._mirrors]:
            task.cancel()
        for task in [*self._tasks, *self._mirrors]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(redis.RedisError, OSError):
            await self.flush()

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except (redis.RedisError, OSError, VroomError) as exc:
                # Keep serving on the last known state; signals of the gap are dropped.
                log.warning("rollout state or signals unavailable", error=str(exc))

    async def refresh(self) -> None:
        raw = await self.redis.get(state_key(self.settings.model_name))
        if raw != self._raw:
            self.state = parse_state(self.settings.model_name, raw)
            self._raw = raw
            self._export(self.state)

    def _export(self, state: RolloutState) -> None:
        """The rollout's phase, weight and last rollback as gauges (the chart's alert on
        a rolled-back rollout and its dashboard read them)."""
        name = self.settings.model_name
        for phase in get_args(Phase):
            self._phase.labels(name, phase).set(1 if phase == state.state else 0)
        self._weight.labels(name).set(state.weight if state.active else 0)
        rolled_back = [t.at for t in state.history if t.state == "rolled_back"]
        self._rolled_back_at.labels(name).set(
            rolled_back[-1] if state.state == "rolled_back" and rolled_back else 0
        )

    async def flush(self) -> None:
        if self.batch:
            await flush_async(self.redis, self.batch)

    # --- the request path --------------------------------------------------------------------

    async def predict(self, features: npt.NDArray[np.float32], key: bytes) -> Prediction:
        """The prediction for ``features``, from the version the rollout assigns to ``key``."""
        state = self.state
        if not (state.mirrored or state.split):
            return await self._champion(features, None, state)
        signals = signals_key(state.model_name, state.id, state.step_name)
        if state.split and share_bucket(state.id, key) < state.split:
            answer = await self._candidate(features, signals, state)
            if answer is None:
                return await self._champion(features, signals, state, role="fallback")
            if state.mirrored:
                # Compared the other way round, so the disagreement covers every
                # request, even when the candidate answers all of a step's traffic.
                self._mirror(features, answer, signals, state, to_champion=True)
            return answer
        answer = await self._champion(features, signals, state)
        if state.mirrored:
            self._mirror(features, answer, signals, state)
        return answer

    async def _champion(
        self,
        features: npt.NDArray[np.float32],
        signals: str | None,
        state: RolloutState,
        role: Role = "champion",
    ) -> Prediction:
        started = time.perf_counter()
        try:
            answer = await self.champion.predict(features)
        except VroomError:
            if signals is not None:
                elapsed = (time.perf_counter() - started) * 1000
                self.batch.observe(signals, state.champion_version or "", elapsed, ok=False)
            raise
        if signals is not None:
            elapsed = (time.perf_counter() - started) * 1000
            self.batch.observe(signals, state.champion_version or "", elapsed, ok=True)
            self._answers.labels(answer.model_version, role).inc()
        self.served_version.record(answer.model_version)
        return answer if role == "champion" else replace(answer, role=role)

    async def _candidate(
        self, features: npt.NDArray[np.float32], signals: str, state: RolloutState
    ) -> Prediction | None:
        """The candidate's answer, or ``None`` (counted as its error) when it fails."""
        version = state.candidate_version or ""
        try:
            answer = await self._ask_candidate(features, signals, version)
        except VroomError as exc:
            log.warning(
                "candidate failed; the champion answers", version=version, error=exc.message
            )
            return None
        self._answers.labels(answer.model_version, "candidate").inc()
        return replace(answer, role="candidate")

    async def _ask_candidate(
        self, features: npt.NDArray[np.float32], signals: str, version: str
    ) -> Prediction:
        """The candidate's answer; its latency and outcome go into the step's signals."""
        started = time.perf_counter()
        try:
            answer = await self.candidate.predict(features)
        except VroomError:
            self.batch.observe(signals, version, (time.perf_counter() - started) * 1000, ok=False)
            raise
        self.batch.observe(signals, version, (time.perf_counter() - started) * 1000, ok=True)
        return answer

    def _mirror(
        self,
        features: npt.NDArray[np.float32],
        answered: Prediction,
        signals: str,
        state: RolloutState,
        *,
        to_champion: bool = False,
    ) -> None:
        """Send a copy of the request to the model that did not answer it, in the
        background, and record how far apart the two answers are."""
        if len(self._mirrors) >= self.settings.rollout_mirror_max_inflight:
            self._mirrored.labels("skipped").inc()
            return
        shadow = self._champion_copy if to_champion else self._shadow
        task = asyncio.create_task(shadow(features, answered, signals, state))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _shadow(
        self,
        features: npt.NDArray[np.float32],
        champion: Prediction,
        signals: str,
        state: RolloutState,
    ) -> None:
        version = state.candidate_version or ""
        try:
            answer = await self._ask_candidate(features, signals, version)
        except VroomError as exc:
            self._mirrored.labels("failed").inc()
            log.debug("mirrored candidate call failed", version=version, error=exc.message)
            return
        self._mirrored.labels("sent").inc()
        self._compare(signals, version, answer, champion)

    async def _champion_copy(
        self,
        features: npt.NDArray[np.float32],
        candidate: Prediction,
        signals: str,
        state: RolloutState,
    ) -> None:
        """The champion's answer to a request the candidate answered (never returned)."""
        started = time.perf_counter()
        try:
            answer = await self.champion.predict(features)
        except VroomError as exc:
            self._mirrored.labels("failed").inc()
            log.debug("mirrored champion call failed", error=exc.message)
            return
        elapsed = (time.perf_counter() - started) * 1000
        self.batch.observe(signals, state.champion_version or "", elapsed, ok=True)
        self._mirrored.labels("sent").inc()
        self._compare(signals, state.candidate_version or "", candidate, answer)

    def _compare(
        self, signals: str, version: str, candidate: Prediction, champion: Prediction
    ) -> None:
        gap = np.abs(np.asarray(candidate.values) - np.asarray(champion.values))
        self.batch.compare(signals, version, float(gap.mean()) if gap.size else 0.0)
