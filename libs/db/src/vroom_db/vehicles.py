"""Saving a new arrival: the database row first, then its ``vehicle-saved`` event.

The row is committed before the event is published, so the materializer never reads
an event whose vehicle is not in the database yet. When Redis is unreachable the
vehicle is still saved and the publisher returns ``False``: the
materializer's reconciliation (every vehicle in the database but missing from the
online store) writes it later, so nothing is lost either way.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
import structlog
from sqlalchemy.orm import Session, sessionmaker

from vroom_common import events
from vroom_common.schemas import VehicleFeatures
from vroom_db.queries import add_new_arrival

log = structlog.get_logger(__name__)


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


def _warn_unpublished(vehicle_id: int, exc: Exception) -> None:
    log.warning(
        "vehicle saved but its event was not published; reconciliation will materialize it",
        vehicle_id=vehicle_id,
        error=f"{type(exc).__name__}: {exc}",
    )
