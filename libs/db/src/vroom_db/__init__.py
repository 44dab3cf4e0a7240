"""The vehicle database: tables, engine set-up and the queries the system shares."""

from vroom_db.models import Base, Reservation, Vehicle
from vroom_db.session import create_schema, make_engine, make_session_factory, one_off_session

__all__ = [
    "Base",
    "Reservation",
    "Vehicle",
    "create_schema",
    "make_engine",
    "make_session_factory",
    "one_off_session",
]
