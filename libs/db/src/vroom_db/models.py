"""Tables. SQLite by default; the same models run on PostgreSQL through its URL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def _utcnow() -> datetime:
    return datetime.now(UTC)


#: A vehicle id: 64-bit, as the API documents it (SQLite's INTEGER is 64-bit already,
#: and its rowid primary key must be declared exactly INTEGER).
VehicleId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Vehicle(Base):
    """A listing: its six raw attributes and where it came from (``csv`` fleet or ``ui``)."""

    __tablename__ = "vehicles"
    __table_args__ = (
        CheckConstraint("technology IN (0, 1)", name="ck_vehicles_technology"),
        CheckConstraint("street_parked IN (0, 1)", name="ck_vehicles_street_parked"),
        CheckConstraint("actual_price > 0", name="ck_vehicles_actual_price"),
        CheckConstraint("recommended_price > 0", name="ck_vehicles_recommended_price"),
        CheckConstraint("num_images >= 0", name="ck_vehicles_num_images"),
        CheckConstraint("description >= 0", name="ck_vehicles_description"),
        CheckConstraint("source IN ('csv', 'ui')", name="ck_vehicles_source"),
    )

    vehicle_id: Mapped[int] = mapped_column(VehicleId, primary_key=True, autoincrement=True)
    technology: Mapped[int] = mapped_column(Integer)
    actual_price: Mapped[float] = mapped_column(Float)
    recommended_price: Mapped[float] = mapped_column(Float)
    num_images: Mapped[int] = mapped_column(Integer)
    street_parked: Mapped[int] = mapped_column(Integer)
    description: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

    reservations: Mapped[list[Reservation]] = relationship(
        back_populates="vehicle", cascade="all, delete-orphan", passive_deletes=True
    )


class Reservation(Base):
    """One observed reservation of a fleet vehicle."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_vehicle_id", "vehicle_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vehicle_id: Mapped[int] = mapped_column(
        VehicleId, ForeignKey("vehicles.vehicle_id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))

    vehicle: Mapped[Vehicle] = relationship(back_populates="reservations")
