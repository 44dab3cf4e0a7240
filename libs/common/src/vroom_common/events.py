"""The event contract: names, payloads and the Redis streams that carry them.

Every producer and consumer imports this module; no event name or stream key is typed
anywhere else. Each event is a pydantic model with a ``type`` discriminator and a
``schema_version``; on the wire a stream entry holds one field, ``event``, whose value
is the model's JSON.

Streams are capped (``XADD MAXLEN ~``) so none grows without bound.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: Version of the payload schemas below; bump on an incompatible change.
SCHEMA_VERSION: Final = 1
#: Default approximate cap (XADD MAXLEN ~) of every stream we write; settings may lower it.
STREAM_MAXLEN: Final = 10_000

#: Pipeline (DAG) ids, shared with Airflow and the gateway's /materialize and /train.
DAG_MATERIALIZE: Final = "vroom_forecast_materialize"
DAG_PIPELINE: Final = "vroom_forecast_pipeline"
DagId = Literal["vroom_forecast_materialize", "vroom_forecast_pipeline"]


def new_run_id(now: datetime | None = None) -> str:
    """An Airflow-style manual run id: ``manual__<UTC ISO time>`` (to the second)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"manual__{moment.isoformat(timespec='seconds')}"


class EventType(StrEnum):
    VEHICLE_SAVED = "vehicle-saved"
    VEHICLE_MATERIALIZED = "vehicle-materialized"
    MODEL_PROMOTED = "model-promoted"
    MODEL_LOADED = "model-loaded"
    PIPELINE_COMPLETED = "pipeline-completed"
    ROLLOUT_REQUESTED = "rollout-requested"
    ROLLOUT_PROGRESSED = "rollout-progressed"


class Stream(StrEnum):
    """Redis stream keys. ``VEHICLES`` is a work queue; the others are notifications."""

    VEHICLES = "vroom:stream:vehicles"
    #: Entries of ``VEHICLES`` that could not be processed, with the error.
    VEHICLES_DEAD_LETTER = "vroom:stream:vehicles:dead-letter"
    VEHICLE_NOTIFICATIONS = "vroom:stream:vehicle-notifications"
    MODELS = "vroom:stream:models"
    PIPELINES = "vroom:stream:pipelines"
    #: Commands to the rollout controller (start, abort, promote): a work queue it reads
    #: from the cursor kept in the rollout's state, so none is lost or applied twice.
    ROLLOUT_COMMANDS = "vroom:stream:rollout-commands"
    #: Every transition of a progressive rollout.
    ROLLOUTS = "vroom:stream:rollouts"
    #: Served predictions (the gateway's prediction log): a work queue the
    #: materializer drains to Parquet (``vroom_features.prediction_log``).
    PREDICTIONS = "vroom:stream:predictions"


#: The consumer group that materializes ``VEHICLES`` entries.
MATERIALIZER_GROUP: Final = "materializer"
#: The consumer group that drains ``PREDICTIONS`` entries to Parquet.
PREDICTION_LOG_GROUP: Final = "prediction-log"


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION


class VehicleSaved(_Event):
    """A vehicle was written to the database and needs its online features."""

    type: Literal[EventType.VEHICLE_SAVED] = EventType.VEHICLE_SAVED
    vehicle_id: int = Field(gt=0)


class VehicleMaterialized(_Event):
    """A vehicle's features are in the online store."""

    type: Literal[EventType.VEHICLE_MATERIALIZED] = EventType.VEHICLE_MATERIALIZED
    vehicle_id: int = Field(gt=0)


class ModelPromoted(_Event):
    """A model version became champion."""

    type: Literal[EventType.MODEL_PROMOTED] = EventType.MODEL_PROMOTED
    model_name: str
    version: str
    run_id: str
    cv_mae_mean: float | None = None
    """The promotion metric, when the version's run logged it."""
    previous_version: str | None = None


class ModelLoaded(_Event):
    """A predictor swapped in a model version and serves it."""

    type: Literal[EventType.MODEL_LOADED] = EventType.MODEL_LOADED
    model_name: str
    version: str
    run_id: str | None = None


class PipelineCompleted(_Event):
    """A pipeline run ended."""

    type: Literal[EventType.PIPELINE_COMPLETED] = EventType.PIPELINE_COMPLETED
    dag_id: DagId
    dag_run_id: str
    state: Literal["success", "failed"]


RolloutAction = Literal["start", "abort", "promote"]


class RolloutRequested(_Event):
    """Someone asks the rollout controller to start, abort or finish a rollout.

    ``start`` carries the version and, optionally, the schedule; what it leaves out
    comes from the controller's settings.
    """

    type: Literal[EventType.ROLLOUT_REQUESTED] = EventType.ROLLOUT_REQUESTED
    model_name: str
    action: RolloutAction
    version: str | None = None
    steps: list[int] | None = None
    step_seconds: float | None = Field(default=None, gt=0)
    shadow_seconds: float | None = Field(default=None, ge=0)
    requested_by: str = "unknown"
    reason: str | None = None


class RolloutProgressed(_Event):
    """A progressive rollout changed state (``vroom_rollout.progressive.machine``)."""

    type: Literal[EventType.ROLLOUT_PROGRESSED] = EventType.ROLLOUT_PROGRESSED
    model_name: str
    rollout_id: str
    state: str
    champion_version: str | None
    candidate_version: str | None
    weight: int
    reason: str | None = None


Event = Annotated[
    VehicleSaved
    | VehicleMaterialized
    | ModelPromoted
    | ModelLoaded
    | PipelineCompleted
    | RolloutRequested
    | RolloutProgressed,
    Field(discriminator="type"),
]
_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: The stream each event type travels on.
STREAM_OF: Final[dict[EventType, Stream]] = {
    EventType.VEHICLE_SAVED: Stream.VEHICLES,
    EventType.VEHICLE_MATERIALIZED: Stream.VEHICLE_NOTIFICATIONS,
    EventType.MODEL_PROMOTED: Stream.MODELS,
    EventType.MODEL_LOADED: Stream.MODELS,
    EventType.PIPELINE_COMPLETED: Stream.PIPELINES,
    EventType.ROLLOUT_REQUESTED: Stream.ROLLOUT_COMMANDS,
    EventType.ROLLOUT_PROGRESSED: Stream.ROLLOUTS,
}

#: The field of a stream entry that holds the event JSON.
ENTRY_FIELD: Final = "event"


def text(value: bytes | str) -> str:
    """A Redis reply (bytes from our clients) as text."""
    return value.decode() if isinstance(value, bytes) else value


def ensure_group(client: redis.Redis, stream: str, group: str) -> bool:
    """Create ``group`` on ``stream`` (and the stream) reading from its first entry, so a
    group created after entries were added still delivers them; False when it exists."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if not str(exc).startswith("BUSYGROUP"):
            raise
        return False
    return True


def encode(event: Event) -> dict[str, str]:
    """The stream entry fields for an event."""
    return {ENTRY_FIELD: event.model_dump_json()}


def decode(fields: dict[bytes, bytes] | dict[str, str]) -> Event:
    """Parse a stream entry back into its event; raises ``pydantic.ValidationError``."""
    raw = fields.get(ENTRY_FIELD) or fields.get(ENTRY_FIELD.encode())  # type: ignore[call-overload]
    if raw is None:
        raise ValueError(f"stream entry has no {ENTRY_FIELD!r} field")
    return _EVENT_ADAPTER.validate_json(raw)


def publish(client: redis.Redis, event: Event, maxlen: int = STREAM_MAXLEN) -> str:
    """Append an event to its stream (capped at about ``maxlen``); returns the entry id."""
    fields: dict[Any, Any] = dict(encode(event))
    entry_id = client.xadd(STREAM_OF[event.type], fields, maxlen=maxlen, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def publish_async(client: aioredis.Redis, event: Event, maxlen: int = STREAM_MAXLEN) -> str:
    """:func:`publish` for asyncio code."""
    fields: dict[Any, Any] = dict(encode(event))
    entry_id = await client.xadd(STREAM_OF[event.type], fields, maxlen=maxlen, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


# --- Work-queue helpers (the materializer's consumer group) -----------------------------

#: Field a dead-letter entry adds: why the entry could not be processed.
DEAD_LETTER_ERROR_FIELD: Final = "error"
#: Field a dead-letter entry adds: the id of the original entry in ``Stream.VEHICLES``.
DEAD_LETTER_SOURCE_FIELD: Final = "source_id"


def dead_letter_fields(
    fields: dict[bytes, bytes] | dict[str, str], error: str, source_id: str
) -> dict[str | bytes, str | bytes]:
    """The dead-letter entry for an unprocessable entry: its fields as they were, the
    error and the original entry id (so it can be inspected and replayed by hand)."""
    entry: dict[str | bytes, str | bytes] = {
        key: value
        for key, value in fields.items()
        if (key.decode() if isinstance(key, bytes) else key)
        not in (DEAD_LETTER_ERROR_FIELD, DEAD_LETTER_SOURCE_FIELD)
    }
    entry[DEAD_LETTER_ERROR_FIELD] = error
    entry[DEAD_LETTER_SOURCE_FIELD] = source_id
    return entry


async def stream_tail_async(client: aioredis.Redis, stream: Stream) -> str:
    """The id after which new entries of ``stream`` will come (``0-0``: none yet).

    The stream's last generated id, not its newest entry's: entries trimmed or deleted
    since are not handed out again.
    """
    if not await client.exists(stream):
        return "0-0"
    info = await client.xinfo_stream(stream)
    last = info["last-generated-id"]
    return last.decode() if isinstance(last, bytes) else str(last)


def queue_publish(pipe: redis.client.Pipeline, event: Event, maxlen: int = STREAM_MAXLEN) -> None:
    """:func:`publish` queued on a pipeline: inside ``MULTI`` it is atomic with the
    pipeline's other commands (the materializer acknowledges work and announces it in
    one transaction, so a crash can never do one without the other)."""
    fields: dict[Any, Any] = dict(encode(event))
    pipe.xadd(STREAM_OF[event.type], fields, maxlen=maxlen, approximate=True)
