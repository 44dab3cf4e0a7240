"""Queries more than one component runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, delete, func, select, text
from sqlalchemy.orm import Session

from vroom_common.schemas import RAW_ATTRIBUTES, VehicleFeatures, VehicleSource
from vroom_db.models import Reservation, Vehicle

#: Ids per ``IN (...)`` list: well inside every backend's bound-parameter limit.
_IN_CHUNK = 500


def vehicles_with_label(session: Session) -> list[dict[str, Any]]:
    """Every vehicle with its raw attributes, source and ``num_reservations``.

    The label is the observed reservation count for fleet (``csv``) vehicles, 0
    included, and ``None`` for new arrivals (``ui``), which have no observation yet.
    """
    counts = (
        select(Reservation.vehicle_id, func.count().label("n"))
        .group_by(Reservation.vehicle_id)
        .subquery()
    )
    label = case(
        (Vehicle.source == "csv", func.coalesce(counts.c.n, 0)),
        else_=None,
    ).label("num_reservations")
    stmt = (
        select(
            Vehicle.vehicle_id,
            Vehicle.technology,
            Vehicle.actual_price,
            Vehicle.recommended_price,
            Vehicle.num_images,
            Vehicle.street_parked,
            Vehicle.description,
            Vehicle.source,
            label,
        )
        .outerjoin(counts, counts.c.vehicle_id == Vehicle.vehicle_id)
        .order_by(Vehicle.vehicle_id)
    )
    return [dict(row._mapping) for row in session.execute(stmt)]


def fleet_size(session: Session) -> int:
    """Number of fleet (``csv``) vehicles: zero means the database needs seeding."""
    return int(session.scalar(select(func.count()).where(Vehicle.source == "csv")) or 0)


def raw_vehicles(
    session: Session, vehicle_ids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Id, the six raw attributes and source of the given vehicles (all when ``None``)."""
    stmt = select(
        Vehicle.vehicle_id, *(getattr(Vehicle, name) for name in RAW_ATTRIBUTES), Vehicle.source
    ).order_by(Vehicle.vehicle_id)
    if vehicle_ids is not None:
        stmt = stmt.where(Vehicle.vehicle_id.in_(list(vehicle_ids)))
    return [dict(row._mapping) for row in session.execute(stmt)]


def vehicle_ids(session: Session) -> list[int]:
    """Every vehicle id, ascending."""
    return list(session.scalars(select(Vehicle.vehicle_id).order_by(Vehicle.vehicle_id)))


def realign_vehicle_ids(conn: Connection) -> None:
    """Call after inserting vehicles with explicit ids (the fleet's own).

    PostgreSQL's id sequence does not see such rows, so the next new arrival would be
    given a fleet vehicle's id and fail; this moves the sequence past the largest id.
    SQLite needs nothing: it takes the largest id plus one itself.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('vehicles', 'vehicle_id'), "
                "COALESCE((SELECT MAX(vehicle_id) FROM vehicles), 0) + 1, false)"
            )
        )


def add_new_arrival(session: Session, attributes: VehicleFeatures) -> int:
    """Insert a new arrival (``source = 'ui'``) and return its id; the caller commits."""
    vehicle = Vehicle(**attributes.model_dump(), source="ui")
    session.add(vehicle)
    session.flush()
    return int(vehicle.vehicle_id)


def vehicle_source(session: Session, vehicle_id: int) -> VehicleSource | None:
    """``csv`` or ``ui`` for a stored vehicle; ``None`` when there is no such vehicle."""
    source = session.scalar(select(Vehicle.source).where(Vehicle.vehicle_id == vehicle_id))
    return None if source is None else source  # type: ignore[return-value]


def delete_new_arrival(session: Session, vehicle_id: int) -> bool:
    """Delete a new arrival (``source = 'ui'``); fleet vehicles are never deleted.
    Returns whether a row went; the caller commits."""
    result = session.execute(
        delete(Vehicle).where(Vehicle.vehicle_id == vehicle_id, Vehicle.source == "ui")
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def reservation_times(session: Session, ids: Sequence[int]) -> list[tuple[int, datetime]]:
    """(vehicle id, created_at) of every reservation of the vehicles ``ids``."""
    rows: list[tuple[int, datetime]] = []
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = list(ids[start : start + _IN_CHUNK])
        stmt = select(Reservation.vehicle_id, Reservation.created_at).where(
            Reservation.vehicle_id.in_(chunk)
        )
        rows.extend((int(v), t) for v, t in session.execute(stmt))
    return rows
