"""Asking the controller to start, abort or promote a rollout, and waiting for its answer.

A request is an entry of the commands stream; the controller applies it on its next
tick and records the outcome in the rollout's state (``last_command``). The caller
waits for that outcome: an accepted request returns the new state, a refused one is a
``Conflict`` with the controller's reason, and no answer in time is a
``DependencyUnavailable`` that says whether any controller holds the lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import redis
import redis.asyncio as aioredis

from vroom_common.errors import Conflict, DependencyUnavailable, VroomError
from vroom_common.events import RolloutRequested
from vroom_common.redis_clients import redis_client
from vroom_rollout.progressive.machine import RolloutState
from vroom_rollout.progressive.signals import VersionSignals
from vroom_rollout.progressive.store import (
    RolloutStore,
    lease_key,
    load_async,
    request_async,
)
from vroom_rollout.settings import RolloutSettings

#: How long a caller waits for the controller's answer by default.
ANSWER_TIMEOUT_S: Final = 15.0
_POLL_S: Final = 0.1
CONTROLLER: Final = "rollout controller"


def _after(cursor: str, entry_id: str) -> bool:
    """Whether stream id ``cursor`` is at or after ``entry_id``."""
    a, b = (tuple(int(p) for p in i.split("-", 1)) for i in (cursor, entry_id))
    return a >= b


def answered(state: RolloutState, entry_id: str) -> RolloutState | None:
    """The state once the controller applied ``entry_id``; raises if it refused it."""
    if not _after(state.command_cursor, entry_id):
        return None
    outcome = state.last_command
    if outcome is not None and outcome.id == entry_id and not outcome.accepted:
        raise Conflict(f"rollout {outcome.action} refused: {outcome.detail}")
    return state


def no_answer(model_name: str, leader: str | None, waited_s: float) -> VroomError:
    if leader is None:
        return DependencyUnavailable(
            CONTROLLER,
            f"no controller holds the rollout lease of {model_name!r}: start one "
            "(`vroom up` runs it locally; on a cluster, the controller Deployment)",
        )
    return DependencyUnavailable(
        CONTROLLER, f"controller {leader} did not apply the request within {waited_s:g} s"
    )


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def request(
    settings: RolloutSettings, command: RolloutRequested, timeout_s: float = ANSWER_TIMEOUT_S
) -> RolloutState:
    """Send ``command`` and wait for the controller's answer (blocking)."""
    client = redis_client(settings)
    try:
        store = RolloutStore(client, settings.model_name, settings.stream_maxlen)
        entry_id = store.request(command)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = answered(store.load(), entry_id)
            if done is not None:
                return done
            time.sleep(_POLL_S)
        raise no_answer(settings.model_name, store.leader(), timeout_s)
    finally:
        client.close()


@dataclass(frozen=True)
class Snapshot:
    """A rollout as a reader sees it: the state, the current step's signals by version,
    and the controller holding the lease (``None``: no controller runs)."""

    state: RolloutState
    signals: dict[str, VersionSignals]
    leader: str | None


def current(settings: RolloutSettings) -> Snapshot:
    """The stored state, its current step's signals and the lease holder (blocking)."""
    client = redis_client(settings)
    try:
        store = RolloutStore(client, settings.model_name, settings.stream_maxlen)
        state = store.load()
        signals = store.signals(state) if state.active else {}
        return Snapshot(state, signals, store.leader())
    finally:
        client.close()


async def request_from(
    client: aioredis.Redis,
    settings: RolloutSettings,
    command: RolloutRequested,
    timeout_s: float = ANSWER_TIMEOUT_S,
) -> RolloutState:
    """:func:`request` for asyncio callers (the gateway), on their Redis pool."""
    try:
        entry_id = await request_async(client, command, settings.stream_maxlen)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = answered(await load_async(client, settings.model_name), entry_id)
            if done is not None:
                return done
            await asyncio.sleep(_POLL_S)
        leader = _text(await client.get(lease_key(settings.model_name)))
    except redis.RedisError as exc:
        raise DependencyUnavailable("redis", f"rollout request: {exc}") from exc
    raise no_answer(settings.model_name, leader, timeout_s)


def progressive_starter(settings: RolloutSettings) -> Callable[[str, str], str] | None:
    """``promote``'s ``start_rollout`` under the configured strategy: a function that
    asks the controller to start a progressive rollout of a version (with the
    controller's schedule) and returns its id; ``None`` when promotions are immediate
    (``rollout_strategy = immediate``, or no serving side: ``rollout_backend = none``)."""
    if settings.rollout_strategy != "progressive" or settings.rollout_backend == "none":
        return None

    def start(version: str, reason: str) -> str:
        command = RolloutRequested(
            model_name=settings.model_name,
            action="start",
            version=version,
            requested_by="promote",
            reason=reason,
        )
        return request(settings, command).id

    return start
