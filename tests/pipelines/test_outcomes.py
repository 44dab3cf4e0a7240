"""``vroom outcomes``: logged predictions joined with the vehicles' labels and the
reservations made after each prediction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vroom_cli.main import app as vroom
from vroom_cli.stack.settings import StackSettings
from vroom_db import make_engine, migrate, one_off_session
from vroom_db.models import Reservation, Vehicle
from vroom_features import FEATURE_NAMES, LABEL
from vroom_features.prediction_files import table_of, write_parts
from vroom_features.prediction_log import decode_record, encode_record
from vroom_pipelines.outcomes import join_outcomes, outcomes_path

SERVED = datetime(2026, 12, 1, 12, tzinfo=UTC)
ATTRIBUTES = {
    "technology": 1,
    "actual_price": 50.0,
    "recommended_price": 45.0,
    "num_images": 4,
    "street_parked": 0,
    "description": 120,
}


def _seed(settings: StackSettings) -> None:
    """Fleet vehicle 1: two reservations before the prediction, three after; fleet
    vehicle 2: none; new arrival 3: one after (no label yet)."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    engine.dispose()
    with one_off_session(settings.database_url) as session:
        session.add_all(
            [
                Vehicle(vehicle_id=1, source="csv", **ATTRIBUTES),
                Vehicle(vehicle_id=2, source="csv", **ATTRIBUTES),
                Vehicle(vehicle_id=3, source="ui", **ATTRIBUTES),
            ]
        )
        naive = SERVED.replace(tzinfo=None)
        offsets = {1: [-48, -1, 1, 5, 30], 3: [2]}
        session.add_all(
            Reservation(vehicle_id=vid, created_at=naive + timedelta(hours=h))
            for vid, hours in offsets.items()
            for h in hours
        )
        session.commit()


def _log(settings: StackSettings) -> None:
    entries = []
    for n, (route, ids, value) in enumerate(
        [
            ("/predict/id", [1], 4.0),
            ("/predict/id", [2], 0.5),
            ("/predict/id", [3], 1.25),
            ("/predict/id", [99], 2.0),  # a vehicle deleted since
            ("/predict", None, 3.0),  # raw attributes: nothing to join
        ]
    ):
        raw = encode_record(
            request_id=f"req-{n}",
            served_at=SERVED.timestamp(),
            route=route,
            model_version="2",
            role="champion",
            latency_ms=3.0,
            features=np.full((1, len(FEATURE_NAMES)), n, dtype=np.float32),
            predictions=[value],
            vehicle_ids=ids,
        )
        entries.append((f"{n + 1}-0", decode_record(raw)))
    write_parts(settings.prediction_log_path, table_of(entries))


def test_predictions_by_id_get_their_label_and_later_reservations(
    isolated_settings: StackSettings,
) -> None:
    _seed(isolated_settings)
    _log(isolated_settings)

    summary = join_outcomes(isolated_settings)

    assert (summary.logged_rows, summary.by_id_rows, summary.joined_rows) == (5, 4, 3)
    assert summary.labelled_rows == 2
    frame = pd.read_parquet(outcomes_path(isolated_settings)).set_index("vehicle_id")
    assert frame.loc[1, LABEL] == 5
    assert frame.loc[1, "reservations_after"] == 3
    assert frame.loc[2, LABEL] == 0
    assert frame.loc[2, "reservations_after"] == 0
    assert pd.isna(frame.loc[3, LABEL])  # a new arrival: no label yet
    assert frame.loc[3, "reservations_after"] == 1
    assert frame.loc[1, "error"] == pytest.approx(-1.0)
    assert summary.mae == pytest.approx((1.0 + 0.5) / 2)
    assert set(FEATURE_NAMES) <= set(frame.columns)
    assert frame.loc[2, FEATURE_NAMES[0]] == 1.0


def test_the_command_prints_the_summary(isolated_settings: StackSettings) -> None:
    _seed(isolated_settings)
    _log(isolated_settings)
    state = ["--state-dir", str(isolated_settings.state_dir)]
    result = CliRunner().invoke(vroom, ["outcomes", *state])
    assert result.exit_code == 0, result.output
    assert "MAE vs label" in result.output
    assert "0.750" in result.output

    later = CliRunner().invoke(vroom, ["outcomes", *state, "--since", "2026-12-02"])
    assert later.exit_code == 0, later.output
    assert pd.read_parquet(outcomes_path(isolated_settings)).empty

    bad = CliRunner().invoke(vroom, ["outcomes", *state, "--since", "yesterday"])
    assert bad.exit_code == 2
    assert "--since" in bad.output
