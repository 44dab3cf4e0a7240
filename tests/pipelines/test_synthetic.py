"""The synthetic fleet: determinism, realistic distributions, the data contract."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from vroom_common.errors import DataValidationError, InvalidInput
from vroom_common.schemas import VehicleFeatures
from vroom_db import make_engine
from vroom_pipelines.seed import FleetData, seed_synthetic, validate_fleet
from vroom_pipelines.settings import PipelineSettings
from vroom_pipelines.synthetic import generate_fleet

N_CALIBRATION = 5_000


@pytest.fixture(scope="module")
def big_fleet() -> FleetData:
    return generate_fleet(N_CALIBRATION, seed=42)


def reservation_counts(fleet: FleetData) -> np.ndarray:
    """Reservation count per vehicle, in fleet order (0 included)."""
    per_vehicle = Counter(r["vehicle_id"] for r in fleet.reservations)
    return np.array([per_vehicle[v["vehicle_id"]] for v in fleet.vehicles])


def column(fleet: FleetData, name: str) -> np.ndarray:
    return np.array([v[name] for v in fleet.vehicles])  # type: ignore[literal-required]


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    first = generate_fleet(300, seed=7)
    again = generate_fleet(300, seed=7)
    other = generate_fleet(300, seed=8)

    assert first == again
    assert first.vehicles != other.vehicles
    assert first.reservations != other.reservations
    assert first.source == "synthetic(n=300, seed=7)"


def test_default_seed_is_42() -> None:
    assert generate_fleet(50) == generate_fleet(50, seed=42)


def test_fleet_passes_the_data_contract(big_fleet: FleetData) -> None:
    assert validate_fleet(big_fleet) == big_fleet
    assert [v["vehicle_id"] for v in big_fleet.vehicles] == list(range(1, N_CALIBRATION + 1))
    for vehicle in big_fleet.vehicles[:500]:
        attributes = {k: val for k, val in vehicle.items() if k != "vehicle_id"}
        assert VehicleFeatures.model_validate(attributes).model_dump() == attributes


def test_attribute_distributions_look_like_the_real_fleet(big_fleet: FleetData) -> None:
    actual = column(big_fleet, "actual_price")
    recommended = column(big_fleet, "recommended_price")
    images = column(big_fleet, "num_images")
    description = column(big_fleet, "description")

    assert actual.min() >= 30
    assert actual.max() <= 175
    assert np.array_equal(np.round(actual, 2), actual)  # cents, like a price
    assert recommended.min() >= 35
    assert recommended.max() <= 90
    assert set(images.tolist()) == {1, 2, 3, 4, 5}
    assert description.min() >= 1
    assert description.max() <= 250
    assert np.median(description) < description.mean()  # skewed towards short texts
    assert 0.12 < column(big_fleet, "technology").mean() < 0.22
    assert 0.45 < column(big_fleet, "street_parked").mean() < 0.55
    times = [r["created_at"] for r in big_fleet.reservations]
    assert min(times) >= datetime(2023, 1, 1)
    assert max(times) < datetime(2024, 1, 1)
    assert times == sorted(times)


def test_reservation_counts_are_calibrated(big_fleet: FleetData) -> None:
    counts = reservation_counts(big_fleet)

    assert 5.5 <= counts.mean() <= 7.5  # real data: 6.376
    assert 0.05 <= (counts == 0).mean() <= 0.13  # real data: 8.9 %
    assert counts.var() > 2 * counts.mean()  # overdispersed, like the real label


def test_counts_depend_on_price_diff_images_and_description(big_fleet: FleetData) -> None:
    counts = reservation_counts(big_fleet)
    price_diff = column(big_fleet, "actual_price") - column(big_fleet, "recommended_price")
    images = column(big_fleet, "num_images")
    description = column(big_fleet, "description")
    technology = column(big_fleet, "technology")

    assert counts[price_diff > 40].mean() < 0.8 * counts[price_diff < 10].mean()
    assert counts[images == 5].mean() > 1.3 * counts[images == 1].mean()
    assert counts[description >= 150].mean() > counts[description <= 30].mean()
    assert counts[technology == 1].mean() > counts[technology == 0].mean()
    ranks = np.argsort(np.argsort(price_diff)), np.argsort(np.argsort(counts))
    assert np.corrcoef(*ranks)[0, 1] < -0.2  # Spearman; real data: -0.34


@pytest.mark.parametrize("n", [0, -3, 1_000_001])
def test_fleet_size_must_be_sensible(n: int) -> None:
    with pytest.raises(InvalidInput, match="n must be between 1 and"):
        generate_fleet(n)


def test_validation_catches_a_broken_generator() -> None:
    fleet = generate_fleet(5, seed=1)
    broken = replace(
        fleet,
        vehicles=[{**fleet.vehicles[0], "actual_price": 0.0}, *fleet.vehicles[1:]],
    )

    with pytest.raises(DataValidationError) as caught:
        validate_fleet(broken)

    assert caught.value.problems == [
        "synthetic(n=5, seed=1) vehicles[0]: column 'actual_price': "
        "Input should be greater than 0 (got 0.0)"
    ]


def test_seed_synthetic_writes_the_fleet_idempotently(tmp_path: Path) -> None:
    settings = PipelineSettings(state_dir=tmp_path)
    fleet = generate_fleet(400, seed=3)
    expected_zero = int((reservation_counts(fleet) == 0).sum())

    first = seed_synthetic(settings, 400, seed=3)
    second = seed_synthetic(settings, 400, seed=3)

    for summary in (first, second):
        assert summary.vehicles == 400
        assert summary.reservations == len(fleet.reservations)
        assert summary.vehicles_without_reservations == expected_zero
        assert summary.source == "synthetic(n=400, seed=3)"
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT count(*), min(source), max(source) FROM vehicles")
            ).one() == (400, "csv", "csv")
            assert conn.execute(text("SELECT count(*) FROM reservations")).scalar_one() == len(
                fleet.reservations
            )
    finally:
        engine.dispose()
