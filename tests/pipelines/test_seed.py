"""The seed pipeline: CSV validation, one-transaction writes, idempotence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from tests.realdata import REAL_DATA_DIR, needs_real_data
from vroom_common.errors import Conflict, DataValidationError, InvalidInput
from vroom_db import Reservation, Vehicle, make_engine, make_session_factory, migrate
from vroom_db.queries import vehicles_with_label
from vroom_pipelines.seed import (
    FleetData,
    ReservationRecord,
    VehicleRecord,
    load_csv_dir,
    seed_from_dir,
    write_fleet,
)
from vroom_pipelines.settings import PipelineSettings

VEHICLES_HEADER = (
    "vehicle_id,technology,actual_price,recommended_price,num_images,street_parked,description"
)
GOOD_VEHICLES = [
    VEHICLES_HEADER,
    "1,1,67.85,59,5,0,7",
    "2,0,100.7,53,5,0,224",
    "3,0,74,74,4,1,21",
    "4,1,135.5,80,1,1,150",
]
GOOD_RESERVATIONS = [
    "vehicle_id,created_at",
    "1,2023-07-27 14:58:26",
    "1,2023-04-18 09:36:57",
    "2,2023-01-02 08:00:00",
    "3,2023-12-30 21:35:31",
]  # vehicle 4 has none


def write_dir(folder: Path, vehicles: list[str] | None, reservations: list[str] | None) -> Path:
    """Write the two CSV files (``None`` leaves a file out) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("vehicles.csv", vehicles), ("reservations.csv", reservations)):
        if lines is not None:
            (folder / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return folder


def replaced(lines: list[str], line_number: int, new: str) -> list[str]:
    """``lines`` with file line ``line_number`` (1 = header) replaced by ``new``."""
    out = list(lines)
    out[line_number - 1] = new
    return out


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> PipelineSettings:
    """Each test runs on SQLite and on PostgreSQL."""
    return PipelineSettings(state_dir=tmp_path / "state", database_url=database_url)


@pytest.fixture
def engine(settings: PipelineSettings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    return write_dir(tmp_path / "good", GOOD_VEHICLES, GOOD_RESERVATIONS)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every stored vehicle (with label) and reservation, for before/after comparisons."""
    with make_session_factory(engine)() as session:
        vehicles = vehicles_with_label(session)
        reservations = session.execute(
            select(Reservation.id, Reservation.vehicle_id, Reservation.created_at).order_by(
                Reservation.id
            )
        ).all()
    return {"vehicles": vehicles, "reservations": [tuple(row) for row in reservations]}


def counts(engine: Engine) -> tuple[int, int, int]:
    """(vehicles, reservations, fleet vehicles without a reservation)."""
    rows = snapshot(engine)["vehicles"]
    with engine.connect() as conn:
        n_reservations = conn.execute(text("SELECT count(*) FROM reservations")).scalar_one()
    return len(rows), n_reservations, sum(1 for row in rows if row["num_reservations"] == 0)


# --- good data ------------------------------------------------------------------------


def test_load_csv_dir_returns_typed_rows(good_dir: Path) -> None:
    fleet = load_csv_dir(good_dir)

    assert fleet.source == str(good_dir)
    assert fleet.vehicles[0] == {
        "vehicle_id": 1,
        "technology": 1,
        "actual_price": 67.85,
        "recommended_price": 59.0,
        "num_images": 5,
        "street_parked": 0,
        "description": 7,
    }
    assert [r["vehicle_id"] for r in fleet.reservations] == [1, 1, 2, 3]
    assert fleet.reservations[0]["created_at"] == datetime(2023, 7, 27, 14, 58, 26)


def test_seed_writes_csv_vehicles_and_is_idempotent(
    settings: PipelineSettings, engine: Engine, good_dir: Path
) -> None:
    first = seed_from_dir(settings, good_dir)
    after_first = snapshot(engine)
    second = seed_from_dir(settings, good_dir)
    after_second = snapshot(engine)

    assert (first.vehicles, first.reservations, first.vehicles_without_reservations) == (4, 4, 1)
    assert (first.inserted, first.updated) == (4, 0)
    assert (second.inserted, second.updated) == (0, 4)
    assert {row["source"] for row in after_first["vehicles"]} == {"csv"}
    assert [row["num_reservations"] for row in after_first["vehicles"]] == [2, 1, 1, 0]
    # Same vehicles, same reservations (re-inserted, so only the surrogate ids move).
    assert after_second["vehicles"] == after_first["vehicles"]
    assert [r[1:] for r in after_second["reservations"]] == [
        r[1:] for r in after_first["reservations"]
    ]
    assert counts(engine) == (4, 4, 1)


def test_reseed_updates_attributes_and_replaces_reservations(
    settings: PipelineSettings, engine: Engine, good_dir: Path, tmp_path: Path
) -> None:
    seed_from_dir(settings, good_dir)
    with engine.connect() as conn:
        created_before = conn.execute(
            select(Vehicle.created_at).where(Vehicle.vehicle_id == 1)
        ).scalar_one()
    changed = write_dir(
        tmp_path / "changed",
        replaced(GOOD_VEHICLES, 2, "1,1,70.00,59,5,0,7"),
        ["vehicle_id,created_at", "4,2023-05-05 05:05:05"],
    )

    summary = seed_from_dir(settings, changed)

    assert summary.updated == 4
    rows = {row["vehicle_id"]: row for row in snapshot(engine)["vehicles"]}
    assert rows[1]["actual_price"] == 70.0
    assert [rows[i]["num_reservations"] for i in (1, 2, 3, 4)] == [0, 0, 0, 1]
    with engine.connect() as conn:
        created_after = conn.execute(
            select(Vehicle.created_at).where(Vehicle.vehicle_id == 1)
        ).scalar_one()
    assert created_after == created_before


def test_reseed_with_a_smaller_fleet_removes_stale_fleet_vehicles_but_not_new_arrivals(
    settings: PipelineSettings, engine: Engine, good_dir: Path, tmp_path: Path
) -> None:
    seed_from_dir(settings, good_dir)
    with engine.begin() as conn:
        conn.execute(
            insert(Vehicle),
            [
                {"vehicle_id": 99, "technology": 0, "actual_price": 40.0,
                 "recommended_price": 45.0, "num_images": 2, "street_parked": 0,
                 "description": 30, "source": "ui"},
            ],
        )  # fmt: skip
    smaller = write_dir(
        tmp_path / "smaller", GOOD_VEHICLES[:3], ["vehicle_id,created_at", "2,2023-01-02 08:00:00"]
    )

    summary = seed_from_dir(settings, smaller)

    assert summary.removed == 2
    rows = {row["vehicle_id"]: row for row in snapshot(engine)["vehicles"]}
    assert sorted(rows) == [1, 2, 99]
    assert rows[99]["source"] == "ui"
    assert counts(engine)[1] == 1  # the removed vehicles' reservations went with them


def test_extra_columns_blank_lines_bom_and_time_zones_are_accepted(tmp_path: Path) -> None:
    folder = write_dir(
        tmp_path / "d",
        [f"{VEHICLES_HEADER},notes", "1,1,67.85,59,5,0,7,nice car", "", "2,0,50,50,0,1,0,"],
        ["vehicle_id,created_at", "1,2023-07-27T14:58:26+02:00", "2,2023-01-02", ""],
    )
    vehicles = folder / "vehicles.csv"
    vehicles.write_bytes(b"\xef\xbb\xbf" + vehicles.read_bytes())  # Excel's UTF-8 BOM

    fleet = load_csv_dir(folder)

    assert [v["vehicle_id"] for v in fleet.vehicles] == [1, 2]
    assert [r["created_at"] for r in fleet.reservations] == [
        datetime(2023, 7, 27, 12, 58, 26),
        datetime(2023, 1, 2),
    ]


# --- bad files: each class gives its message and writes nothing -------------------------

BAD_FILES: dict[str, tuple[list[str] | None, list[str] | None, list[str]]] = {
    # case: (vehicles.csv lines, reservations.csv lines, expected problem lines)
    "missing column": (
        [line.rsplit(",", 1)[0] for line in GOOD_VEHICLES],
        GOOD_RESERVATIONS,
        [f"vehicles.csv:1: column 'description': missing column (header: {VEHICLES_HEADER[:-12]})"],
    ),
    "missing reservation column": (
        GOOD_VEHICLES,
        ["vehicle_id,when", "1,2023-07-27 14:58:26"],
        ["reservations.csv:1: column 'created_at': missing column (header: vehicle_id,when)"],
    ),
    "wrong type": (
        replaced(GOOD_VEHICLES, 3, "2,0,100.7,53,five,0,224"),
        GOOD_RESERVATIONS,
        [
            "vehicles.csv:3: column 'num_images': Input should be a valid integer, "
            "unable to parse string as an integer (got 'five')"
        ],
    ),
    "wrong type of price": (
        replaced(GOOD_VEHICLES, 2, "1,1,cheap,59,5,0,7"),
        GOOD_RESERVATIONS,
        [
            "vehicles.csv:2: column 'actual_price': Input should be a valid number, "
            "unable to parse string as a number (got 'cheap')"
        ],
    ),
    "wrong type of vehicle id": (
        replaced(GOOD_VEHICLES, 4, "3.5,0,74,74,4,1,21"),
        GOOD_RESERVATIONS,
        [
            "vehicles.csv:4: column 'vehicle_id': must be a positive integer (got '3.5')",
            # its reservation then points at no readable vehicle
            "reservations.csv:5: column 'vehicle_id': unknown vehicle 3 (not in vehicles.csv)",
        ],
    ),
    "wrong type of timestamp": (
        GOOD_VEHICLES,
        replaced(GOOD_RESERVATIONS, 3, "1,yesterday"),
        [
            "reservations.csv:3: column 'created_at': not a datetime, expected "
            "YYYY-MM-DD HH:MM:SS (got 'yesterday')"
        ],
    ),
    "out-of-range value": (
        replaced(GOOD_VEHICLES, 5, "4,2,135.5,80,1,1,150"),
        GOOD_RESERVATIONS,
        ["vehicles.csv:5: column 'technology': Input should be less than or equal to 1 (got '2')"],
    ),
    "negative price": (
        replaced(GOOD_VEHICLES, 5, "4,1,135.5,-80,1,1,150"),
        GOOD_RESERVATIONS,
        ["vehicles.csv:5: column 'recommended_price': Input should be greater than 0 (got '-80')"],
    ),
    "missing value": (
        replaced(GOOD_VEHICLES, 3, "2,0,100.7,,5,0,224"),
        GOOD_RESERVATIONS,
        ["vehicles.csv:3: column 'recommended_price': missing value"],
    ),
    "unknown vehicle": (
        GOOD_VEHICLES,
        [*GOOD_RESERVATIONS, "99,2023-03-03 03:03:03"],
        ["reservations.csv:6: column 'vehicle_id': unknown vehicle 99 (not in vehicles.csv)"],
    ),
    "duplicate id": (
        [*GOOD_VEHICLES, "2,1,80,80,2,1,10"],
        GOOD_RESERVATIONS,
        ["vehicles.csv:6: column 'vehicle_id': duplicate vehicle 2 (first at vehicles.csv:3)"],
    ),
    "empty vehicles file": (
        [],
        GOOD_RESERVATIONS,
        [f"vehicles.csv:1: file is empty (expected header {VEHICLES_HEADER})"],
    ),
    "header-only reservations file": (
        GOOD_VEHICLES,
        ["vehicle_id,created_at"],
        ["reservations.csv:2: no data rows after the header"],
    ),
    "row with too many fields": (
        replaced(GOOD_VEHICLES, 2, "1,1,67.85,59,5,0,7,surprise"),
        GOOD_RESERVATIONS,
        ["vehicles.csv:2: row has 8 fields, the header has 7"],
    ),
    "several problems at once": (
        [*replaced(GOOD_VEHICLES, 2, "1,1,67.85,59,-5,3,7"), "1,0,50,50,1,1,1"],
        [*GOOD_RESERVATIONS, "7,2023-02-30 10:00:00"],
        [
            "vehicles.csv:2: column 'num_images': Input should be greater than or equal to 0 "
            "(got '-5')",
            "vehicles.csv:2: column 'street_parked': Input should be less than or equal to 1 "
            "(got '3')",
            "vehicles.csv:6: column 'vehicle_id': duplicate vehicle 1 (first at vehicles.csv:2)",
            "reservations.csv:6: column 'vehicle_id': unknown vehicle 7 (not in vehicles.csv)",
            "reservations.csv:6: column 'created_at': not a datetime, expected "
            "YYYY-MM-DD HH:MM:SS (got '2023-02-30 10:00:00')",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_reported_and_writes_nothing(
    case: str, settings: PipelineSettings, engine: Engine, good_dir: Path, tmp_path: Path
) -> None:
    vehicles, reservations, expected = BAD_FILES[case]
    bad_dir = write_dir(tmp_path / "bad", vehicles, reservations)
    seed_from_dir(settings, good_dir)
    before = snapshot(engine)

    with pytest.raises(DataValidationError) as caught:
        seed_from_dir(settings, bad_dir)

    assert caught.value.problems == expected
    assert isinstance(caught.value, InvalidInput)  # a 4xx, never a 500
    assert expected[0] in str(caught.value)
    assert snapshot(engine) == before


def test_problems_are_capped(tmp_path: Path) -> None:
    lines = [VEHICLES_HEADER] + [f"{i},9,1,1,1,1,1" for i in range(1, 3000)]
    folder = write_dir(tmp_path / "many", lines, GOOD_RESERVATIONS)

    with pytest.raises(DataValidationError) as caught:
        load_csv_dir(folder)

    assert len(caught.value.problems) == 1001
    assert caught.value.problems[-1] == "stopped after 1000 problems"
    assert "and 981 more" in str(caught.value)


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    folder = write_dir(tmp_path / "latin1", GOOD_VEHICLES, GOOD_RESERVATIONS)
    (folder / "vehicles.csv").write_bytes(
        "\n".join([*GOOD_VEHICLES, "5,0,50,50,1,1,1,café"]).encode("latin-1")
    )

    with pytest.raises(DataValidationError) as caught:
        load_csv_dir(folder)

    assert caught.value.problems[0].startswith("vehicles.csv: not UTF-8 text")


@pytest.mark.parametrize("missing", ["vehicles.csv", "reservations.csv"])
def test_missing_file_names_its_path(
    missing: str, settings: PipelineSettings, engine: Engine, good_dir: Path, tmp_path: Path
) -> None:
    seed_from_dir(settings, good_dir)
    before = snapshot(engine)
    folder = write_dir(tmp_path / "partial", GOOD_VEHICLES, GOOD_RESERVATIONS)
    (folder / missing).unlink()

    with pytest.raises(DataValidationError) as caught:
        seed_from_dir(settings, folder)

    assert caught.value.problems == [f"{folder / missing}: file not found"]
    assert snapshot(engine) == before


def test_missing_directory_names_its_path(settings: PipelineSettings, tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="data directory not found") as caught:
        seed_from_dir(settings, tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in caught.value.problems[0]


# --- conflicts and transactions -----------------------------------------------------------


def test_ui_vehicle_with_a_fleet_id_is_a_conflict_and_nothing_is_written(
    settings: PipelineSettings, engine: Engine, good_dir: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(Vehicle),
            {
                "vehicle_id": 3,
                "technology": 0,
                "actual_price": 50.0,
                "recommended_price": 55.0,
                "num_images": 2,
                "street_parked": 1,
                "description": 40,
                "source": "ui",
            },
        )
    before = snapshot(engine)

    with pytest.raises(Conflict, match=r"already belong to new arrivals \(source 'ui'\): 3;"):
        seed_from_dir(settings, good_dir)

    assert snapshot(engine) == before


def test_a_failing_write_rolls_back_everything(engine: Engine) -> None:
    """Vehicles are inserted before reservations; a later failure must undo them too."""
    vehicle = VehicleRecord(
        vehicle_id=1,
        technology=0,
        actual_price=10.0,
        recommended_price=10.0,
        num_images=1,
        street_parked=0,
        description=1,
    )
    orphan = ReservationRecord(vehicle_id=42, created_at=datetime(2023, 1, 1))  # unvalidated
    before = snapshot(engine)

    with pytest.raises(IntegrityError):
        write_fleet(engine, FleetData(vehicles=[vehicle], reservations=[orphan], source="test"))

    assert snapshot(engine) == before


# --- the real data set ------------------------------------------------------------------


@pytest.mark.realdata
@needs_real_data
def test_seeding_the_real_data_twice_gives_the_same_database(
    settings: PipelineSettings, engine: Engine
) -> None:
    first = seed_from_dir(settings, REAL_DATA_DIR)
    after_first = snapshot(engine)
    second = seed_from_dir(settings, REAL_DATA_DIR)
    after_second = snapshot(engine)

    for summary in (first, second):
        assert (
            summary.vehicles,
            summary.reservations,
            summary.vehicles_without_reservations,
        ) == (1000, 6376, 89)
    assert counts(engine) == (1000, 6376, 89)
    assert after_second["vehicles"] == after_first["vehicles"]
    assert sorted(r[1:] for r in after_second["reservations"]) == sorted(
        r[1:] for r in after_first["reservations"]
    )
    assert first.duration_s < 5  # about 0.2 s on a laptop-class machine
