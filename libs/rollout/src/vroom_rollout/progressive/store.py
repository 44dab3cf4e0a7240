"""Where a rollout lives: Redis, shared by every gateway replica and controller.

Keys (per registered model):

- ``vroom:rollout:<model>:state``: the :class:`RolloutState` as JSON. Only the
  controller holding the lease writes it, and every write checks the lease in the
  same transaction (``WATCH``), so a controller that lost the lease (paused, cut off)
  cannot overwrite its successor's progress.
- ``vroom:rollout:<model>:lease``: the controller that may advance rollouts
  (``SET NX PX``; renewed while it runs, gone ``rollout_lease_ttl_s`` after it stops).
- ``vroom:rollout:<model>:signals:<rollout id>:<step>``: the step's signal counts
  (:mod:`vroom_rollout.progressive.signals`), kept a week.

Requests to the controller (start, abort, promote) are entries of
``Stream.ROLLOUT_COMMANDS``; every transition is announced on ``Stream.ROLLOUTS``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any, Final

import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from vroom_common import events
from vroom_common.errors import Conflict, DependencyUnavailable, VroomError
from vroom_common.events import RolloutProgressed, RolloutRequested, Stream, text
from vroom_rollout.progressive.machine import RolloutState
from vroom_rollout.progressive.signals import SignalBatch, VersionSignals, summarize

#: How long a step's signal counts are kept.
SIGNALS_TTL_S: Final = 7 * 24 * 3600
#: A request older than this when the controller reads it is refused, not applied.
COMMAND_MAX_AGE_S: Final = 600.0

#: Renews the lease only for its holder (a plain PEXPIRE could extend a successor's).
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
#: KEYS: lease, state, rollouts stream; ARGV: owner, state JSON, stream cap, then the
#: announcement's fields (none: not announced).
_COMMIT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
if #ARGV > 3 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
end
return 1
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def state_key(model_name: str) -> str:
    return f"vroom:rollout:{model_name}:state"


def lease_key(model_name: str) -> str:
    return f"vroom:rollout:{model_name}:lease"


def signals_key(model_name: str, rollout_id: str, step_name: str) -> str:
    return f"vroom:rollout:{model_name}:signals:{rollout_id}:{step_name}"


def parse_state(model_name: str, raw: bytes | str | None) -> RolloutState:
    """The stored state (``idle`` when nothing was ever stored)."""
    if raw is None:
        return RolloutState(model_name=model_name)
    try:
        return RolloutState.model_validate_json(raw)
    except ValidationError as exc:
        raise DependencyUnavailable(
            "redis", f"{state_key(model_name)} does not hold a rollout state: {exc}"
        ) from exc


def progressed(state: RolloutState) -> RolloutProgressed:
    """The ``rollout-progressed`` event announcing ``state``."""
    return RolloutProgressed(
        model_name=state.model_name,
        rollout_id=state.id,
        state=state.state,
        champion_version=state.champion_version,
        candidate_version=state.candidate_version,
        weight=state.split if state.state != "promoted" else 100,
        reason=state.reason,
    )


def entry_age_s(entry_id: str, now: float | None = None) -> float:
    """Seconds since a stream entry was added (its id starts with the Unix time in ms)."""
    return (now or time.time()) - int(entry_id.split("-", 1)[0]) / 1000


def _redis_error(exc: redis.RedisError) -> VroomError:
    return DependencyUnavailable("redis", f"rollout state: {exc}")


class LeaseLost(Conflict):
    """Another controller holds the lease: this one must stop writing."""


class RolloutStore:
    """The rollout state of one model, for the controller and the command line."""

    def __init__(
        self, client: redis.Redis, model_name: str, maxlen: int = events.STREAM_MAXLEN
    ) -> None:
        self.client = client
        self.model_name = model_name
        self.maxlen = maxlen

    # --- reading ---------------------------------------------------------------------------

    def load(self) -> RolloutState:
        try:
            raw = self.client.get(state_key(self.model_name))
        except redis.RedisError as exc:
            raise _redis_error(exc) from exc
        return parse_state(self.model_name, raw)  # type: ignore[arg-type]

    def signals(self, state: RolloutState) -> dict[str, VersionSignals]:
        """The current step's signals, by version."""
        if not state.id:
            return {}
        try:
            fields = self.client.hgetall(signals_key(self.model_name, state.id, state.step_name))
        except redis.RedisError as exc:
            raise _redis_error(exc) from exc
        return summarize(fields)  # type: ignore[arg-type]

    def leader(self) -> str | None:
        try:
            raw = self.client.get(lease_key(self.model_name))
        except redis.RedisError as exc:
            raise _redis_error(exc) from exc
        return raw.decode() if isinstance(raw, bytes) else raw  # type: ignore[return-value]

    # --- the lease ------------------------------------------------------------------------

    def acquire(self, owner: str, ttl_s: float) -> bool:
        """Take the lease if it is free, or renew it if ``owner`` holds it."""
        key, ttl_ms = lease_key(self.model_name), int(ttl_s * 1000)
        try:
            if self.client.set(key, owner, nx=True, px=ttl_ms):
                return True
            return bool(self.client.eval(_RENEW, 1, key, owner, ttl_ms))
        except redis.RedisError as exc:
            raise _redis_error(exc) from exc

    def release(self, owner: str) -> None:
        with contextlib.suppress(redis.RedisError):  # it expires on its own
            self.client.eval(_RELEASE, 1, lease_key(self.model_name), owner)

    # --- writing (the lease holder only) ----------------------------------------------------

    def commit(self, state: RolloutState, owner: str, *, announce: bool = True) -> None:
        """Store ``state`` (and announce it) if ``owner`` still holds the lease: one
        script, so the check and the writes are atomic and the holder's own renewals
        (which a WATCH would see as a change) never get in the way."""
        event = events.encode(progressed(state)) if announce else {}
        fields = [part for item in event.items() for part in item]
        try:
            written = self.client.eval(
                _COMMIT,
                3,
                lease_key(self.model_name),
                state_key(self.model_name),
                str(Stream.ROLLOUTS),
                owner,
                state.model_dump_json(),
                self.maxlen,
                *fields,
            )
        except redis.RedisError as exc:
            raise _redis_error(exc) from exc
        if not written:
            raise LeaseLost(
                f"the rollout lease of {self.model_name!r} is held by "
                f"{self.leader()!r}, not {owner!r}"
            )

    # --- commands ---------------------------------------------------------------------------

    def request(self, command: RolloutRequested) -> str:
        """Queue a command for the controller; returns its entry id."""
        try:
            return events.publish(self.client, command, self.maxlen)
        except redis.RedisError as exc:
            raise _redis_error(exc) from exc

    def commands(
        self, after: str, block_ms: int | None = None
    ) -> list[tuple[str, RolloutRequested | None]]:
        """Entries of the commands stream after ``after``: this model's commands, and
        ``None`` for other models' or undecodable entries (so the cursor moves on)."""
        try:
            answer: Any = self.client.xread(
                {Stream.ROLLOUT_COMMANDS: after}, count=100, block=block_ms
            )
        except redis.RedisError as exc:
            raise _redis_error(exc) from exc
        found: list[tuple[str, RolloutRequested | None]] = []
        for _stream, entries in answer or ():
            for raw_id, fields in entries:
                found.append((text(raw_id), self._command(fields)))
        return found

    def _command(self, fields: Mapping[bytes, bytes]) -> RolloutRequested | None:
        try:
            event = events.decode(dict(fields))
        except (ValidationError, ValueError):
            return None
        if isinstance(event, RolloutRequested) and event.model_name == self.model_name:
            return event
        return None


# --- the gateway's side (asyncio) --------------------------------------------------------------


async def load_async(client: aioredis.Redis, model_name: str) -> RolloutState:
    return parse_state(model_name, await client.get(state_key(model_name)))


async def signals_async(client: aioredis.Redis, state: RolloutState) -> dict[str, VersionSignals]:
    if not state.id:
        return {}
    key = signals_key(state.model_name, state.id, state.step_name)
    return summarize(await client.hgetall(key))  # type: ignore[misc]


async def request_async(client: aioredis.Redis, command: RolloutRequested, maxlen: int) -> str:
    return await events.publish_async(client, command, maxlen)


async def flush_async(client: aioredis.Redis, batch: SignalBatch) -> None:
    """Add the batch's counts to their hashes (one round trip)."""
    counts = batch.drain()
    if not counts:
        return
    async with client.pipeline(transaction=False) as pipe:
        for key, fields in counts.items():
            for field, count in fields.items():
                pipe.hincrby(key, field, count)
            pipe.expire(key, SIGNALS_TTL_S)
        await pipe.execute()
