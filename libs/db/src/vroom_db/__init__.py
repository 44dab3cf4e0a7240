"""The vehicle database: tables, engine set-up and the queries the system shares."""

from vroom_db.migrate import migrate
from vroom_db.models import Base, Reservation, Vehicle
from vroom_db.session import make_engine, make_session_factory, one_off_session

__all__ = [
    "Base",
    "Reservation",
    "Vehicle",
    "make_engine",
    "make_session_factory",
    "migrate",
    "one_off_session",
]
