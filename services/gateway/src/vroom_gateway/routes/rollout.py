"""``/rollout``: follow, start, abort and promote the model's progressive rollout.

Reads come from the state in Redis; changes are requests to the rollout controller,
answered once it applied them (409 when it refused, naming why; 503 when no
controller answers). ``GET /rollout/events`` streams every transition (SSE).
"""

from __future__ import annotations

import redis
from fastapi import APIRouter, Body, Depends
from sse_starlette import EventSourceResponse

from vroom_common.errors import DependencyUnavailable
from vroom_common.events import Event, RolloutProgressed, RolloutRequested, Stream
from vroom_gateway.deps import Resources, ResourcesDep
from vroom_gateway.protection import rate_limited
from vroom_gateway.routes.events import (
    SSE_RESPONSE,
    Convert,
    LastEventId,
    Payload,
    follow,
    response,
    start,
)
from vroom_gateway.schemas import RolloutAbort, RolloutStart, RolloutView
from vroom_rollout.progressive.machine import RolloutState
from vroom_rollout.progressive.requests import request_from
from vroom_rollout.progressive.store import lease_key, load_async, signals_async

router = APIRouter(tags=["rollout"])

#: Rollout controls: authenticated, and rate limited as one scope.
_CONTROL = [Depends(rate_limited("rollout"))]

#: Who the controller records as the requester of the gateway's changes.
REQUESTED_BY = "gateway API"


async def view(resources: Resources, state: RolloutState | None = None) -> RolloutView:
    client = resources.redis
    try:
        state = state or await load_async(client, resources.settings.model_name)
        signals = await signals_async(client, state) if state.active else {}
        leader = await client.get(lease_key(state.model_name))
    except redis.RedisError as exc:
        raise DependencyUnavailable("redis", f"rollout state: {exc}") from exc
    return RolloutView(
        state=state.state,
        rollout_id=state.id or None,
        champion_version=state.champion_version,
        candidate_version=state.candidate_version,
        weight=100 if state.state == "promoted" else state.split,
        started_at=state.started_at,
        step=state.step_name if state.active else None,
        steps=state.policy.steps if state.policy else list(resources.settings.rollout_steps),
        policy=state.policy,
        signals=signals,
        status=state.status,
        reason=state.reason,
        history=state.history,
        controller=leader.decode() if isinstance(leader, bytes) else leader,
        last_command=state.last_command,
    )


async def _ask(resources: Resources, command: RolloutRequested) -> RolloutView:
    state = await request_from(resources.redis, resources.settings, command)
    return await view(resources, state)


@router.get("/rollout")
async def rollout_status(resources: ResourcesDep) -> RolloutView:
    """The current (or last) rollout: state, versions, weight, schedule, the current
    step's signals per version, history and the controller holding the lease."""
    return await view(resources)


@router.post("/rollout", dependencies=_CONTROL)
async def rollout_start(body: RolloutStart, resources: ResourcesDep) -> RolloutView:
    """Start a progressive rollout of a registered version against the champion; 409
    when one is in progress, the version is champion, or there is no champion."""
    command = RolloutRequested(
        model_name=resources.settings.model_name,
        action="start",
        version=body.version,
        steps=body.steps,
        step_seconds=body.step_seconds,
        shadow_seconds=body.shadow_seconds,
        requested_by=REQUESTED_BY,
    )
    return await _ask(resources, command)


@router.post("/rollout/abort", dependencies=_CONTROL)
async def rollout_abort(
    resources: ResourcesDep,
    body: RolloutAbort | None = Body(default=None),  # noqa: B008
) -> RolloutView:
    """Roll the candidate back now (any state of a running rollout); 409 when none runs."""
    command = RolloutRequested(
        model_name=resources.settings.model_name,
        action="abort",
        reason=body.reason if body else None,
        requested_by=REQUESTED_BY,
    )
    return await _ask(resources, command)


@router.post("/rollout/promote", dependencies=_CONTROL)
async def rollout_promote(resources: ResourcesDep) -> RolloutView:
    """Skip the remaining steps and promote the candidate now; 409 when none runs."""
    command = RolloutRequested(
        model_name=resources.settings.model_name, action="promote", requested_by=REQUESTED_BY
    )
    return await _ask(resources, command)


def _progressed(model_name: str) -> Convert:
    def convert(event: Event) -> Payload | None:
        if not isinstance(event, RolloutProgressed) or event.model_name != model_name:
            return None
        return event.model_dump(mode="json", exclude={"schema_version"})

    return convert


@router.get("/rollout/events", response_class=EventSourceResponse, responses=SSE_RESPONSE)
async def rollout_events(
    resources: ResourcesDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """``{type: rollout-progressed, rollout_id, state, champion_version,
    candidate_version, weight, reason}`` at every transition of a rollout."""
    cursor = await start(resources.redis, Stream.ROLLOUTS, last_event_id)
    convert = _progressed(resources.settings.model_name)
    return response(resources, follow(resources.redis, Stream.ROLLOUTS, cursor, convert))
