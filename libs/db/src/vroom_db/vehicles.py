"""Saving a new arrival: the database row first, then its ``vehicle-saved`` event.

The row is committed before the event is published, so the materializer never reads
an event whose vehicle is not in the database yet. When Redis is unreachable the
vehicle is still saved and the call says ``event_published=False``: the
materializer's reconciliation (every vehicle in the database but missing from the
online store) writes it later, so nothing is lost either way.
"""

from __future__ import annotations

from typing import NamedTuple

import redis
import redis.asyncio as aioredis
import structlog
from sqlalchemy.orm import Session, sessionmaker

from vroom_common import events
from vroom_common.schemas import VehicleFeatures
from vroom_common.settings import Settings
from vroom_db.migrate import migrate
from vroom_db.queries import add_new_arrival
from vroom_db.session import make_engine, make_session_factory

log = structlog.get_logger(__name__)


class SavedVehicle(NamedTuple):
    """The new vehicle's id and whether its ``vehicle-saved`` event reached Redis."""

    vehicle_id: int
    event_published: bool


def insert_vehicle(sessions: sessionmaker[Session], attributes: VehicleFeatures) -> int:
    """Insert a new arrival (``source = 'ui'``) and commit; returns its id."""
    with sessions.begin() as session:
        return add_new_arrival(session, attributes)


def publish_vehicle_saved(
    client: redis.Redis, vehicle_id: int, maxlen: int = events.STREAM_MAXLEN
) -> bool:
    """Publish ``vehicle-saved``; ``False`` (and a warning) when Redis refuses or is down."""
    try:
        events.publish(client, events.VehicleSaved(vehicle_id=vehicle_id), maxlen=maxlen)
    except redis.RedisError as exc:
        _warn_unpublished(vehicle_id, exc)
        return False
    return True


async def publish_vehicle_saved_async(
    client: aioredis.Redis, vehicle_id: int, maxlen: int = events.STREAM_MAXLEN
) -> bool:
    """:func:`publish_vehicle_saved` for asyncio code (the gateway)."""
    try:
        await events.publish_async(
            client, events.VehicleSaved(vehicle_id=vehicle_id), maxlen=maxlen
        )
    except redis.RedisError as exc:
        _warn_unpublished(vehicle_id, exc)
        return False
    return True


def save_vehicle(
    target: Settings | sessionmaker[Session],
    client: redis.Redis,
    attributes: VehicleFeatures,
    maxlen: int | None = None,
) -> SavedVehicle:
    """Save a new arrival, then announce it on ``Stream.VEHICLES``.

    Args:
        target: A session factory (a long-lived service keeps one), or settings to
            open the database from for this one call.
        client: Redis; an unreachable one only makes ``event_published`` false. Give
            it a short connect timeout and few retries: redis-py's defaults retry a
            refused connection three times (about 4 s) before giving up.
        attributes: The six validated raw attributes.
        maxlen: Approximate cap of the stream (default: the settings' ``stream_maxlen``
            when settings are given, else 10,000).
    """
    if isinstance(target, Settings):
        engine = make_engine(target.database_url)
        try:
            migrate(engine)
            vehicle_id = insert_vehicle(make_session_factory(engine), attributes)
        finally:
            engine.dispose()
        cap = maxlen or target.stream_maxlen
    else:
        vehicle_id = insert_vehicle(target, attributes)
        cap = maxlen or events.STREAM_MAXLEN
    return SavedVehicle(vehicle_id, publish_vehicle_saved(client, vehicle_id, cap))


def _warn_unpublished(vehicle_id: int, exc: Exception) -> None:
    log.warning(
        "vehicle saved but its event was not published; reconciliation will materialize it",
        vehicle_id=vehicle_id,
        error=f"{type(exc).__name__}: {exc}",
    )
