"""The Alembic history is the schema, on SQLite and on PostgreSQL (``database_url``)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from vroom_common.schemas import VehicleFeatures
from vroom_db import Base, Reservation, Vehicle, make_engine, make_session_factory, migrate
from vroom_db.migrate import current_revision, downgrade, head_revision
from vroom_db.queries import add_new_arrival, delete_new_arrival, realign_vehicle_ids

ATTRIBUTES = {
    "technology": 1,
    "actual_price": 60.0,
    "recommended_price": 55.0,
    "num_images": 4,
    "street_parked": 0,
    "description": 120,
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def test_migrations_build_exactly_the_models_schema(engine: Engine) -> None:
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == head_revision()
    assert _schema_diff(engine) == []
    migrate(engine)  # again: nothing to do
    assert current_revision(engine) == head_revision()


def test_downgrade_to_base_drops_everything_and_upgrade_restores_it(engine: Engine) -> None:
    migrate(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None
    migrate(engine)
    assert _schema_diff(engine) == []


def test_a_database_made_before_migrations_is_adopted_with_its_rows(engine: Engine) -> None:
    Base.metadata.create_all(engine)  # a database made before migrations existed
    with engine.begin() as conn:
        conn.execute(insert(Vehicle), [{"vehicle_id": 7, "source": "csv", **ATTRIBUTES}])
    migrate(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Vehicle)) == 1
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [head_revision()]


def test_the_constraints_hold_on_every_backend(engine: Engine) -> None:
    migrate(engine)
    with pytest.raises(IntegrityError, match="ck_vehicles_technology"), engine.begin() as conn:
        conn.execute(insert(Vehicle), [{**ATTRIBUTES, "technology": 2, "source": "ui"}])
    orphan = {"vehicle_id": 999, "created_at": datetime(2026, 1, 1)}  # the foreign key
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(Reservation), [orphan])
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        vehicle_id = add_new_arrival(session, VehicleFeatures(**ATTRIBUTES))
        session.execute(
            insert(Reservation), [{"vehicle_id": vehicle_id, "created_at": datetime(2026, 1, 1)}]
        )
    with sessions.begin() as session:
        assert delete_new_arrival(session, vehicle_id)
    with engine.connect() as conn:  # ON DELETE CASCADE took the reservation too
        assert conn.scalar(select(func.count()).select_from(Reservation)) == 0


def test_new_arrivals_after_a_fleet_with_explicit_ids_get_fresh_ids(engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        fleet = [{"vehicle_id": i, "source": "csv", **ATTRIBUTES} for i in (1, 2, 500)]
        conn.execute(insert(Vehicle), fleet)
        realign_vehicle_ids(conn)
    with make_session_factory(engine).begin() as session:
        ids = [add_new_arrival(session, VehicleFeatures(**ATTRIBUTES)) for _ in range(3)]
    assert ids == [501, 502, 503]


def test_processes_migrating_at_once_migrate_once(database_url: str) -> None:
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(len(engines)) as pool:
            list(pool.map(migrate, engines))
        assert current_revision(engines[0]) == head_revision()
        assert _schema_diff(engines[0]) == []
        with engines[0].connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_vehicle_ids_are_64_bit_on_every_backend(engine: Engine) -> None:
    """The API takes any id up to 2**63 - 1: one past 32 bits is a vehicle like another
    (and an unknown one is simply absent), not a database error."""
    migrate(engine)
    big = 2**62 + 5
    with engine.begin() as conn:
        conn.execute(insert(Vehicle), [{"vehicle_id": big, "source": "csv", **ATTRIBUTES}])
        conn.execute(insert(Reservation), [{"vehicle_id": big, "created_at": datetime(2026, 1, 2)}])
    with make_session_factory(engine).begin() as session:
        assert session.get(Vehicle, big) is not None
        assert session.get(Vehicle, 2**63 - 1) is None
        assert delete_new_arrival(session, 2**40) is False
    with engine.connect() as conn:
        assert conn.scalar(select(Reservation.vehicle_id)) == big
