"""Materialize: database -> Parquet offline store + Redis online store.

Fleet vehicles (``source = csv``) with their observed label form the offline store,
the training set. Every vehicle, new arrivals included, gets its features written
to the online store so serving can look any of them up by id.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import redis
import structlog

from vroom_common.errors import DependencyUnavailable, PipelineFailed
from vroom_common.settings import Settings
from vroom_db import one_off_session
from vroom_db.queries import vehicles_with_label
from vroom_features import ENTITY_KEY, FEATURE_NAMES, LABEL, TIMESTAMP_FIELD, compute_features
from vroom_features.online import write_online
from vroom_features.store import apply_definitions, open_store
from vroom_pipelines.preflight import check_redis
from vroom_pipelines.progress import Progress

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MaterializeSummary:
    vehicles: int
    fleet_rows: int
    new_arrivals: int
    online_rows: int
    offline_path: Path
    offline_bytes: int
    duration_s: float


def feature_frame(settings: Settings, now: datetime | None = None) -> pd.DataFrame:
    """Every vehicle's id, source, features, label and event time, from the database."""
    with one_off_session(settings.database_url) as session:
        rows = vehicles_with_label(session)
    if not rows:
        raise PipelineFailed("the database holds no vehicles: run `vroom seed` first")
    raw = pd.DataFrame(rows)
    frame = pd.concat([raw[[ENTITY_KEY, "source"]], compute_features(raw)], axis=1)
    frame[LABEL] = raw[LABEL].astype("Int64")  # nullable: new arrivals have no label
    frame[TIMESTAMP_FIELD] = pd.Timestamp(now or datetime.now(UTC))
    return frame


def write_offline_store(frame: pd.DataFrame, path: Path) -> int:
    """Write the fleet rows atomically (a reader never sees half a file); returns bytes."""
    fleet = frame[frame["source"] == "csv"].drop(columns=["source"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    fleet.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path.stat().st_size


def materialize(settings: Settings, progress: Progress | None = None) -> MaterializeSummary:
    """Run the whole materialization; raises a :class:`VroomError` subclass on failure."""
    progress = progress or Progress.silent()
    started = time.perf_counter()
    check_redis(settings)
    with progress.step("Reading vehicles and computing features"):
        frame = feature_frame(settings)
    with progress.step("Writing the Parquet offline store"):
        size = write_offline_store(frame, settings.offline_store_path)
    online = frame[[ENTITY_KEY, *FEATURE_NAMES, TIMESTAMP_FIELD]]
    try:
        with progress.step("Registering the Feast definitions"):
            store = open_store(settings)
            apply_definitions(store, settings)
        with progress.step(f"Writing {len(online)} vehicles to the Redis online store"):
            write_online(store, online)
    except redis.exceptions.ConnectionError as exc:
        raise DependencyUnavailable("redis", f"{settings.redis_url}: {exc}") from exc
    fleet_rows = int((frame["source"] == "csv").sum())
    summary = MaterializeSummary(
        vehicles=len(frame),
        fleet_rows=fleet_rows,
        new_arrivals=len(frame) - fleet_rows,
        online_rows=len(online),
        offline_path=settings.offline_store_path,
        offline_bytes=size,
        duration_s=time.perf_counter() - started,
    )
    log.info("materialized", **{k: str(v) for k, v in summary.__dict__.items()})
    return summary
