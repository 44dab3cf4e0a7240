"""Outcomes: the prediction log joined with the reservations that came after.

Each logged prediction of a vehicle asked for by id (``POST /predict/id``) gets:

- ``num_reservations``: the vehicle's label now, by the training set's rule (the
  observed count for fleet vehicles, none yet for new arrivals);
- ``reservations_after``: its reservations created after the prediction was served;
- ``error``: prediction minus ``num_reservations`` where there is a label.

Predictions of raw attributes (``/predict``, ``/predict/batch``) name no vehicle and
have nothing to join; they stay in the log for drift and audit. The result replaces
``prediction_outcomes.parquet`` beside the offline store atomically, in the offline
store's columns (``vehicle_id``, the features, the label) plus the log's, so a
retraining can take it as extra rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import structlog

from vroom_common.settings import Settings
from vroom_db import one_off_session
from vroom_db.queries import reservation_times, vehicles_with_label
from vroom_features import ENTITY_KEY, LABEL
from vroom_features.prediction_files import read_log

log = structlog.get_logger(__name__)

#: The joined table's file, beside the offline store.
OUTCOMES_FILE: Final = "prediction_outcomes.parquet"


def outcomes_path(settings: Settings) -> Path:
    return settings.offline_store_path.parent / OUTCOMES_FILE


@dataclass(frozen=True)
class OutcomesSummary:
    logged_rows: int
    by_id_rows: int
    joined_rows: int
    labelled_rows: int
    mae: float | None
    path: Path
    duration_s: float


def _reservations_after(
    served: pd.DataFrame, times: list[tuple[int, datetime]]
) -> npt.NDArray[np.int64]:
    """Per row of ``served``, its vehicle's reservations created after ``served_at``."""
    after = np.zeros(len(served), dtype=np.int64)
    if not times:
        return after
    booked = pd.DataFrame(times, columns=[ENTITY_KEY, "created_at"])
    created = pd.to_datetime(booked["created_at"])
    if created.dt.tz is not None:  # compared as naive UTC: the column is stored naive
        created = created.dt.tz_convert(UTC).dt.tz_localize(None)
    booked["created_at"] = created.astype("datetime64[us]")
    by_vehicle = {
        int(str(vid)): np.sort(group["created_at"].to_numpy())
        for vid, group in booked.groupby(ENTITY_KEY)
    }
    naive = served["served_at"].dt.tz_convert(UTC).dt.tz_localize(None)
    served_at = naive.astype("datetime64[us]").to_numpy()
    for index, (vid, moment) in enumerate(zip(served[ENTITY_KEY], served_at, strict=True)):
        stamps = by_vehicle.get(int(vid))
        if stamps is not None:
            after[index] = len(stamps) - np.searchsorted(stamps, moment, side="right")
    return after


def join_outcomes(settings: Settings, *, since: date | None = None) -> OutcomesSummary:
    """The log (from day ``since`` on) joined with the database's vehicles and
    reservations, written to :func:`outcomes_path`."""
    started = time.monotonic()
    logged = read_log(settings.prediction_log_path, since=since)
    by_id = logged[logged[ENTITY_KEY].notna()].copy()
    by_id[ENTITY_KEY] = by_id[ENTITY_KEY].astype("int64")
    ids = sorted({int(v) for v in by_id[ENTITY_KEY]})
    with one_off_session(settings.database_url) as session:
        labels = pd.DataFrame(vehicles_with_label(session), columns=[ENTITY_KEY, LABEL, "source"])
        times = reservation_times(session, ids)
    labels = labels[labels[ENTITY_KEY].isin(ids)][[ENTITY_KEY, LABEL]]
    # Vehicles deleted since (new arrivals can be) have nothing to join.
    joined = by_id.merge(labels, on=ENTITY_KEY, how="inner", validate="many_to_one")
    joined[LABEL] = joined[LABEL].astype("Int64")
    joined["reservations_after"] = _reservations_after(joined, times)
    joined["error"] = joined["predicted_reservations"] - joined[LABEL].astype("Float64")
    labelled = joined[joined[LABEL].notna()]
    mae = float(labelled["error"].abs().mean()) if len(labelled) else None

    path = outcomes_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joined.to_parquet(tmp, index=False)
    tmp.replace(path)
    summary = OutcomesSummary(
        logged_rows=len(logged),
        by_id_rows=len(by_id),
        joined_rows=len(joined),
        labelled_rows=len(labelled),
        mae=mae,
        path=path,
        duration_s=round(time.monotonic() - started, 3),
    )
    log.info(
        "outcomes joined",
        rows=summary.joined_rows,
        labelled=summary.labelled_rows,
        mae=mae,
        path=str(path),
    )
    return summary
