"""Queries more than one component runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from vroom_db.models import Reservation, Vehicle


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
