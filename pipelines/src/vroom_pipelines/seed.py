"""Seed pipeline: fleet vehicles and their reservations into the vehicle database.

Two inputs share one contract and one write path:

- ``load_csv_dir`` reads ``vehicles.csv`` and ``reservations.csv`` from a folder and
  validates every row (columns, types, value rules, duplicate ids, reservations of
  unknown vehicles). Every problem names file, line and column; all of them are
  collected and raised together as one ``DataValidationError``.
- ``vroom_pipelines.synthetic.generate_fleet`` builds a fleet in memory, which
  ``validate_fleet`` checks against the same rules.

``write_fleet`` then stores a validated fleet in one transaction: vehicles are upserted
with ``source = 'csv'`` and the reservations of the seeded vehicles are replaced, so
running the seed twice leaves the same rows. A bad input writes nothing.

The value rules of the six raw attributes are not restated here: each row goes
through ``VehicleFeatures``, the same model the HTTP API validates request bodies with.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

import structlog
from pydantic import ValidationError
from sqlalchemy import Engine, bindparam, delete, insert, select, update

from vroom_common.errors import Conflict, DataValidationError
from vroom_common.schemas import RAW_ATTRIBUTES, VehicleFeatures
from vroom_common.settings import Settings
from vroom_db import Reservation, Vehicle, make_engine, migrate
from vroom_db.queries import realign_vehicle_ids

log = structlog.get_logger(__name__)

VEHICLES_FILE = "vehicles.csv"
RESERVATIONS_FILE = "reservations.csv"

#: Required columns of each file, in their usual order. Extra columns are ignored.
VEHICLE_COLUMNS: tuple[str, ...] = ("vehicle_id", *RAW_ATTRIBUTES)
RESERVATION_COLUMNS: tuple[str, ...] = ("vehicle_id", "created_at")

#: Validation stops collecting after this many problems (the input is clearly wrong).
MAX_PROBLEMS = 1000

#: Vehicles seeded by this pipeline are fleet vehicles with observed reservations.
SEED_SOURCE = "csv"


class VehicleRecord(TypedDict):
    """One validated vehicle: its id and the six raw attributes."""

    vehicle_id: int
    technology: int
    actual_price: float
    recommended_price: float
    num_images: int
    street_parked: int
    description: int


class ReservationRecord(TypedDict):
    """One validated reservation (``created_at`` naive, UTC when the input had a zone)."""

    vehicle_id: int
    created_at: datetime


@dataclass(frozen=True)
class FleetData:
    """A fleet ready to write: vehicles, reservations and where they came from."""

    vehicles: list[VehicleRecord]
    reservations: list[ReservationRecord]
    source: str


@dataclass(frozen=True)
class SeedSummary:
    """What a seed run wrote."""

    vehicles: int
    reservations: int
    vehicles_without_reservations: int
    source: str
    inserted: int
    updated: int
    removed: int
    duration_s: float


# --- validation -----------------------------------------------------------------------


class _TooManyProblemsError(Exception):
    """Raised inside validation once ``MAX_PROBLEMS`` problems are collected."""


class _Problems:
    """Collects problem lines, stopping the scan when there are too many."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, message: str, column: str | None = None) -> None:
        prefix = f"{where}: column '{column}': " if column else f"{where}: "
        self.lines.append(prefix + message)
        if len(self.lines) >= MAX_PROBLEMS:
            self.lines.append(f"stopped after {MAX_PROBLEMS} problems")
            raise _TooManyProblemsError


# A row to validate: its location ("vehicles.csv:14") and its values by column. CSV rows
# carry strings; in-memory fleets carry typed values. ``None`` means the value is absent.
_Row = tuple[str, Mapping[str, object]]


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _parse_vehicle_id(value: object) -> int | None:
    """A positive integer id, or ``None`` when the value is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = int(value.strip())
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed > 0 else None


def _parse_timestamp(value: object) -> datetime | None:
    """An ISO 8601 / ``YYYY-MM-DD HH:MM:SS`` timestamp, normalized to naive UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _check_vehicle_id(where: str, value: object, problems: _Problems) -> int | None:
    if _is_blank(value):
        problems.add(where, "missing value", "vehicle_id")
        return None
    vehicle_id = _parse_vehicle_id(value)
    if vehicle_id is None:
        problems.add(where, f"must be a positive integer (got {value!r})", "vehicle_id")
    return vehicle_id


def _validate_vehicles(
    rows: Iterable[_Row], problems: _Problems
) -> tuple[list[VehicleRecord], set[int]]:
    """Validated vehicles, and every well-formed id seen (even on otherwise bad rows)."""
    records: list[VehicleRecord] = []
    first_seen: dict[int, str] = {}
    for where, values in rows:
        vehicle_id = _check_vehicle_id(where, values.get("vehicle_id"), problems)
        if vehicle_id is not None:
            if vehicle_id in first_seen:
                problems.add(
                    where,
                    f"duplicate vehicle {vehicle_id} (first at {first_seen[vehicle_id]})",
                    "vehicle_id",
                )
                vehicle_id = None
            else:
                first_seen[vehicle_id] = where

        attributes: dict[str, object] = {}
        for column in RAW_ATTRIBUTES:
            value = values.get(column)
            if _is_blank(value):
                problems.add(where, "missing value", column)
            else:
                attributes[column] = value.strip() if isinstance(value, str) else value
        if len(attributes) < len(RAW_ATTRIBUTES):
            continue
        try:
            features = VehicleFeatures.model_validate(attributes, strict=False)
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else None
                problems.add(where, f"{error['msg']} (got {error['input']!r})", field)
            continue
        if vehicle_id is not None:
            records.append(
                VehicleRecord(
                    vehicle_id=vehicle_id,
                    technology=features.technology,
                    actual_price=features.actual_price,
                    recommended_price=features.recommended_price,
                    num_images=features.num_images,
                    street_parked=features.street_parked,
                    description=features.description,
                )
            )
    return records, set(first_seen)


def _validate_reservations(
    rows: Iterable[_Row], known_vehicles: set[int] | None, vehicles_name: str, problems: _Problems
) -> list[ReservationRecord]:
    """Validated reservations. ``known_vehicles`` is ``None`` when it could not be read."""
    records: list[ReservationRecord] = []
    for where, values in rows:
        vehicle_id = _check_vehicle_id(where, values.get("vehicle_id"), problems)
        if (
            vehicle_id is not None
            and known_vehicles is not None
            and vehicle_id not in known_vehicles
        ):
            problems.add(
                where, f"unknown vehicle {vehicle_id} (not in {vehicles_name})", "vehicle_id"
            )
            vehicle_id = None

        raw_created = values.get("created_at")
        created_at = None
        if _is_blank(raw_created):
            problems.add(where, "missing value", "created_at")
        else:
            created_at = _parse_timestamp(raw_created)
            if created_at is None:
                problems.add(
                    where,
                    f"not a datetime, expected YYYY-MM-DD HH:MM:SS (got {raw_created!r})",
                    "created_at",
                )
        if vehicle_id is not None and created_at is not None:
            records.append(ReservationRecord(vehicle_id=vehicle_id, created_at=created_at))
    return records


def validate_fleet(fleet: FleetData) -> FleetData:
    """Check an in-memory fleet against the data contract; the same rules as the CSV files.

    Raises:
        DataValidationError: with one line per problem, located as ``<source> vehicles[i]``.
    """
    problems = _Problems()
    vehicle_rows = (
        (f"{fleet.source} vehicles[{i}]", dict(record)) for i, record in enumerate(fleet.vehicles)
    )
    reservation_rows = (
        (f"{fleet.source} reservations[{i}]", dict(record))
        for i, record in enumerate(fleet.reservations)
    )
    try:
        if not fleet.vehicles:
            problems.add(f"{fleet.source}", "the fleet has no vehicles")
        vehicles, known = _validate_vehicles(vehicle_rows, problems)
        reservations = _validate_reservations(
            reservation_rows, known, f"{fleet.source} vehicles", problems
        )
    except _TooManyProblemsError:
        pass
    if problems.lines:
        raise DataValidationError(problems.lines)
    return FleetData(vehicles=vehicles, reservations=reservations, source=fleet.source)


# --- CSV files ------------------------------------------------------------------------


class _CsvFile:
    """Rows of one CSV file, with line numbers; header and layout problems go to ``problems``.

    ``readable`` is false when the file had no usable header (empty, or required columns
    missing); its rows are then not validated.
    """

    def __init__(self, path: Path, required: tuple[str, ...], problems: _Problems) -> None:
        self.path = path
        self.name = path.name
        self.required = required
        self.problems = problems
        self.readable = False
        self.data_rows = 0
        self._last_line = 0

    def rows(self) -> Iterator[_Row]:
        self._last_line = 0
        try:
            yield from self._rows()
        except UnicodeDecodeError as exc:
            # Decoding runs ahead in chunks, so no reliable line number here.
            self.readable = False
            self.problems.add(
                self.name,
                f"not UTF-8 text ({exc.reason}, byte {exc.object[exc.start : exc.end]!r})",
            )
        except csv.Error as exc:
            self.readable = False
            self.problems.add(f"{self.name}:{self._last_line + 1}", f"malformed CSV: {exc}")

    def _rows(self) -> Iterator[_Row]:
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header_row = next(reader, None)
            if header_row is None or not any(cell.strip() for cell in header_row):
                self.problems.add(
                    f"{self.name}:1", f"file is empty (expected header {','.join(self.required)})"
                )
                return
            header = [cell.strip() for cell in header_row]
            if not self._check_header(header):
                return
            self.readable = True
            for row in reader:
                self._last_line = reader.line_num
                if not row or not any(cell.strip() for cell in row):
                    continue  # blank line
                self.data_rows += 1
                where = f"{self.name}:{reader.line_num}"
                if len(row) > len(header):
                    self.problems.add(
                        where, f"row has {len(row)} fields, the header has {len(header)}"
                    )
                yield where, dict(zip(header, row, strict=False))
        if self.data_rows == 0:
            self.problems.add(f"{self.name}:2", "no data rows after the header")

    def _check_header(self, header: list[str]) -> bool:
        ok = True
        seen: set[str] = set()
        for column in header:
            if column in seen and column in self.required:
                self.problems.add(f"{self.name}:1", "column appears twice in the header", column)
                ok = False
            seen.add(column)
        for column in self.required:
            if column not in seen:
                self.problems.add(
                    f"{self.name}:1", f"missing column (header: {','.join(header)})", column
                )
                ok = False
        return ok


def load_csv_dir(data_dir: Path) -> FleetData:
    """Read and validate ``vehicles.csv`` and ``reservations.csv`` from ``data_dir``.

    Required columns: ``vehicle_id`` plus the six raw attributes in ``vehicles.csv``;
    ``vehicle_id, created_at`` in ``reservations.csv``. Extra columns are ignored.

    Raises:
        DataValidationError: every problem found (up to ``MAX_PROBLEMS``), each naming
            file, line and column; also when the folder or a file is missing.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataValidationError([f"{data_dir}: data directory not found"])
    paths = [data_dir / VEHICLES_FILE, data_dir / RESERVATIONS_FILE]
    missing = [f"{path}: file not found" for path in paths if not path.is_file()]
    if missing:
        raise DataValidationError(missing)

    problems = _Problems()
    vehicles_csv = _CsvFile(paths[0], VEHICLE_COLUMNS, problems)
    reservations_csv = _CsvFile(paths[1], RESERVATION_COLUMNS, problems)
    try:
        vehicles, known = _validate_vehicles(vehicles_csv.rows(), problems)
        reservations = _validate_reservations(
            reservations_csv.rows(),
            known if vehicles_csv.readable else None,
            VEHICLES_FILE,
            problems,
        )
    except _TooManyProblemsError:
        pass
    except OSError as exc:
        problems.lines.append(f"{data_dir}: cannot read the CSV files: {exc}")
    if problems.lines:
        raise DataValidationError(problems.lines)
    return FleetData(vehicles=vehicles, reservations=reservations, source=str(data_dir))


# --- writing --------------------------------------------------------------------------


def write_fleet(engine: Engine, fleet: FleetData) -> SeedSummary:
    """Store a validated fleet in one transaction; idempotent.

    The fleet in ``fleet`` becomes the database's fleet: vehicles are upserted with
    ``source = 'csv'`` (``created_at`` of existing rows is kept), the reservations of
    every seeded vehicle are deleted and re-inserted, and fleet vehicles that are no
    longer in ``fleet`` are removed (a training set never mixes two data sets). New
    arrivals (``source = 'ui'``) are never touched.

    Raises:
        Conflict: a fleet vehicle id belongs to a new arrival (``source = 'ui'``);
            nothing is written.
    """
    started = time.perf_counter()
    migrate(engine)
    with engine.begin() as conn:
        existing: dict[int, str] = dict(
            conn.execute(select(Vehicle.vehicle_id, Vehicle.source)).all()
        )
        clashes = sorted(
            record["vehicle_id"]
            for record in fleet.vehicles
            if existing.get(record["vehicle_id"], SEED_SOURCE) != SEED_SOURCE
        )
        if clashes:
            shown = ", ".join(str(vehicle_id) for vehicle_id in clashes[:20])
            more = f" and {len(clashes) - 20} more" if len(clashes) > 20 else ""
            raise Conflict(
                f"{len(clashes)} vehicle id(s) of {fleet.source} already belong to new "
                f"arrivals (source 'ui'): {shown}{more}; nothing was written"
            )

        new_rows = [
            {**record, "source": SEED_SOURCE}
            for record in fleet.vehicles
            if record["vehicle_id"] not in existing
        ]
        changed_rows = [
            {**record, "b_vehicle_id": record["vehicle_id"], "source": SEED_SOURCE}
            for record in fleet.vehicles
            if record["vehicle_id"] in existing
        ]
        if new_rows:
            conn.execute(insert(Vehicle), new_rows)
            realign_vehicle_ids(conn)
        if changed_rows:
            # Existing fleet vehicles: new attribute values, same created_at, and their
            # reservations replaced below. (New vehicles have none: foreign key.)
            conn.execute(
                update(Vehicle)
                .where(Vehicle.vehicle_id == bindparam("b_vehicle_id"))
                .values({column: bindparam(column) for column in (*RAW_ATTRIBUTES, "source")}),
                changed_rows,
            )
            conn.execute(
                delete(Reservation).where(Reservation.vehicle_id == bindparam("b_vehicle_id")),
                [{"b_vehicle_id": row["b_vehicle_id"]} for row in changed_rows],
            )
        if fleet.reservations:
            conn.execute(insert(Reservation), fleet.reservations)
        seeded_ids = {record["vehicle_id"] for record in fleet.vehicles}
        stale = [
            vehicle_id
            for vehicle_id, source in existing.items()
            if source == SEED_SOURCE and vehicle_id not in seeded_ids
        ]
        if stale:
            conn.execute(delete(Reservation).where(Reservation.vehicle_id.in_(stale)))
            conn.execute(delete(Vehicle).where(Vehicle.vehicle_id.in_(stale)))

    booked = {record["vehicle_id"] for record in fleet.reservations}
    summary = SeedSummary(
        vehicles=len(fleet.vehicles),
        reservations=len(fleet.reservations),
        vehicles_without_reservations=sum(
            1 for record in fleet.vehicles if record["vehicle_id"] not in booked
        ),
        source=fleet.source,
        inserted=len(new_rows),
        updated=len(changed_rows),
        removed=len(stale),
        duration_s=time.perf_counter() - started,
    )
    log.info("fleet seeded", **asdict(summary))
    return summary


def seed_from_dir(settings: Settings, data_dir: Path) -> SeedSummary:
    """Validate the CSV files in ``data_dir`` and write them to ``settings.database_url``."""
    started = time.perf_counter()
    fleet = load_csv_dir(data_dir)
    return _write(settings, fleet, started)


def seed_synthetic(settings: Settings, n: int, seed: int = 42) -> SeedSummary:
    """Generate ``n`` synthetic vehicles (deterministic for ``seed``), validate and write them."""
    # Imported here: the generator builds ``FleetData`` from this module.
    from vroom_pipelines.synthetic import generate_fleet  # noqa: PLC0415

    started = time.perf_counter()
    fleet = validate_fleet(generate_fleet(n, seed=seed))
    return _write(settings, fleet, started)


def _write(settings: Settings, fleet: FleetData, started: float) -> SeedSummary:
    engine = make_engine(settings.database_url)
    try:
        summary = write_fleet(engine, fleet)
    finally:
        engine.dispose()
    return replace(summary, duration_s=time.perf_counter() - started)
