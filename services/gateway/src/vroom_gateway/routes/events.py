"""Server-Sent Events: ``/events`` (model health), ``/vehicles/events`` (features
materialized), ``/pipelines/events`` (pipeline runs ended).

Each stream reads one Redis notification stream from a cursor: every message carries
``id:`` = the stream entry id, so a client that reconnects with ``Last-Event-ID``
resumes right after the last entry it saw (entries trimmed by the stream cap meanwhile
are the only ones it can miss). sse-starlette sends the keep-alive comments and ends
open streams when the server shuts down. A Redis outage pauses the stream (keep-alives
continue) until Redis answers again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final

import redis
import redis.asyncio as aioredis
import structlog
from fastapi import APIRouter, Header
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from vroom_common import events
from vroom_common.events import Event, Stream
from vroom_gateway.deps import Resources, ResourcesDep
from vroom_gateway.routes.health import current_health

router = APIRouter(tags=["events"])
log = structlog.get_logger(__name__)

#: The health-changed message type (a gateway-side view of model-loaded events).
HEALTH_CHANGED: Final = "health-changed"
#: How long one XREAD blocks (ms); shorter than the Redis socket timeout.
_BLOCK_MS: Final = 1000
#: Entries per read.
_BATCH: Final = 100
#: Pause after a Redis error before reading again (s), doubling up to the maximum.
_RETRY_S: Final = 0.5
_RETRY_MAX_S: Final = 5.0

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        pattern=r"^\d{1,20}-\d{1,20}$",
        description="Resume after this event id (a Redis stream entry id, e.g. 1700000000000-0).",
    ),
]
Payload = dict[str, Any]
Convert = Callable[[Event], Payload | None]


def _entry_id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def message(payload: Payload, entry_id: str | None) -> ServerSentEvent:
    """One SSE message: ``id:`` the stream entry id, ``data:`` the payload as JSON."""
    return ServerSentEvent(data=json.dumps(payload, separators=(",", ":")), id=entry_id)


async def follow(
    client: aioredis.Redis, stream: Stream, cursor: str, convert: Convert
) -> AsyncIterator[ServerSentEvent]:
    """Messages for the entries of ``stream`` after ``cursor``, forever."""
    pause = _RETRY_S
    while True:
        try:
            if cursor == "$":  # started while Redis was down: pin the cursor first
                cursor = await events.stream_tail_async(client, stream)
            answer = await client.xread({stream: cursor}, count=_BATCH, block=_BLOCK_MS)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("event stream paused: redis unavailable", stream=stream, error=str(exc))
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX_S)
            continue
        pause = _RETRY_S
        for _key, entries in answer or ():
            for raw_id, fields in entries:
                cursor = _entry_id(raw_id)
                try:
                    event = events.decode(fields)
                except (ValidationError, ValueError) as exc:
                    log.warning(
                        "skipping undecodable entry", stream=stream, id=cursor, error=str(exc)
                    )
                    continue
                payload = convert(event)
                if payload is not None:
                    yield message(payload, cursor)


async def start(client: aioredis.Redis, stream: Stream, last_event_id: str | None) -> str:
    """Where a new connection starts: after ``Last-Event-ID``, else after the newest
    entry (a new client gets what happens from now on)."""
    if last_event_id is not None:
        return last_event_id
    try:
        return await events.stream_tail_async(client, stream)
    except (redis.ConnectionError, redis.TimeoutError):
        return "$"  # Redis is down: start from whatever comes once it is back


def health_changed(model_name: str) -> Callable[[Event], Payload | None]:
    """The champion's predictor serving a new version: the health as clients see it
    changed. A rollout candidate's predictor (``<model>-candidate``) loading is not."""

    def convert(event: Event) -> Payload | None:
        if not isinstance(event, events.ModelLoaded) or event.model_name != model_name:
            return None
        return {"type": HEALTH_CHANGED, "status": "ok", "model_version": event.version}

    return convert


def _vehicle_materialized(event: Event) -> Payload | None:
    if not isinstance(event, events.VehicleMaterialized):
        return None
    return {"type": event.type.value, "vehicle_id": event.vehicle_id}


def _pipeline_completed(event: Event) -> Payload | None:
    if not isinstance(event, events.PipelineCompleted):
        return None
    return event.model_dump(mode="json", include={"type", "dag_id", "dag_run_id", "state"})


def response(resources: Resources, messages: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(
        messages,
        ping=resources.settings.sse_keepalive_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


SSE_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An endless event stream."}
}


@router.get("/events", response_class=EventSourceResponse, responses=SSE_RESPONSE)
async def model_events(
    resources: ResourcesDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """``{type: health-changed, status, model_version}`` on connect (the current health)
    and each time a predictor starts serving a model version."""
    client = resources.redis
    cursor = await start(client, Stream.MODELS, last_event_id)

    async def messages() -> AsyncIterator[ServerSentEvent]:
        health = await current_health(resources)
        payload = {
            "type": HEALTH_CHANGED,
            "status": health.status,
            "model_version": health.model_version,
        }
        yield message(payload, cursor if cursor != "$" else None)
        async for item in follow(
            client, Stream.MODELS, cursor, health_changed(resources.settings.model_name)
        ):
            yield item

    return response(resources, messages())


@router.get("/vehicles/events", response_class=EventSourceResponse, responses=SSE_RESPONSE)
async def vehicle_events(
    resources: ResourcesDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """``{type: vehicle-materialized, vehicle_id}`` each time a vehicle's features reach
    the online store."""
    cursor = await start(resources.redis, Stream.VEHICLE_NOTIFICATIONS, last_event_id)
    return response(
        resources,
        follow(resources.redis, Stream.VEHICLE_NOTIFICATIONS, cursor, _vehicle_materialized),
    )


@router.get("/pipelines/events", response_class=EventSourceResponse, responses=SSE_RESPONSE)
async def pipeline_events(
    resources: ResourcesDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """``{type: pipeline-completed, dag_id, dag_run_id, state}`` each time a pipeline run
    ends, successful or not."""
    cursor = await start(resources.redis, Stream.PIPELINES, last_event_id)
    return response(
        resources, follow(resources.redis, Stream.PIPELINES, cursor, _pipeline_completed)
    )
