"""GET /v1/features/offline[/{id}] and the in-memory offline store's reload rule."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.feature_service.conftest import Materialized
from vroom_db import one_off_session
from vroom_db.queries import vehicles_with_label
from vroom_feature_service.app import create_app
from vroom_feature_service.offline import OfflineStore
from vroom_features import FEATURE_NAMES, LABEL, feature_row

URL = "/v1/features/offline"


def write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """As materialization writes it: a temporary file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


@pytest.fixture
def offline_copy(materialized: Materialized, tmp_path: Path) -> Path:
    """A copy of the materialized offline store this test may rewrite."""
    path = tmp_path / "offline" / "vehicle_features.parquet"
    path.parent.mkdir()
    shutil.copy2(materialized.settings.offline_store_path, path)
    return path


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- through the app ------------------------------------------------------------------


def test_all_rows_with_label(
    client: TestClient, materialized: Materialized, fleet: list[dict[str, Any]]
) -> None:
    with one_off_session(materialized.settings.database_url) as session:
        labels = {row["vehicle_id"]: row[LABEL] for row in vehicles_with_label(session)}

    response = client.get(URL)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["available"] is True
    assert body["path"] == str(materialized.settings.offline_store_path)
    rows = {row["vehicle_id"]: row for row in body["rows"]}
    assert len(rows) == len(body["rows"]) == len(fleet)
    for vehicle in fleet:
        row = rows[vehicle["vehicle_id"]]
        assert [row[name] for name in FEATURE_NAMES] == feature_row(vehicle)
        assert row[LABEL] == labels[vehicle["vehicle_id"]]
        assert datetime.fromisoformat(row["event_timestamp"]).tzinfo is not None


def test_one_row_by_id(client: TestClient, fleet: list[dict[str, Any]]) -> None:
    vehicle = fleet[10]

    response = client.get(f"{URL}/{vehicle['vehicle_id']}")

    assert response.status_code == 200, response.text
    row = response.json()
    assert row["vehicle_id"] == vehicle["vehicle_id"]
    assert [row[name] for name in FEATURE_NAMES] == feature_row(vehicle)
    assert isinstance(row[LABEL], int)


def test_unknown_id_is_404(client: TestClient) -> None:
    response = client.get(f"{URL}/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "vehicle 999999 is not in the offline store"}


@pytest.mark.parametrize("vehicle_id", ["0", "-3", "abc"])
def test_bad_id_is_422(client: TestClient, vehicle_id: str) -> None:
    response = client.get(f"{URL}/{vehicle_id}")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "vehicle_id"]


def test_rewritten_file_is_served_after_the_check_interval(
    materialized: Materialized, offline_copy: Path
) -> None:
    settings = materialized.settings.model_copy(update={"offline_store_path": offline_copy})
    interval = 0.3
    with TestClient(create_app(settings, offline_check_interval_s=interval)) as client:
        before = client.get(URL).json()["rows"]
        first = before[0]["vehicle_id"]

        frame = pd.read_parquet(offline_copy)
        frame.loc[frame["vehicle_id"] == first, LABEL] = 4242
        write_atomically(frame.iloc[: len(frame) // 2], offline_copy)
        time.sleep(interval + 0.1)

        after = client.get(URL).json()["rows"]
        assert len(after) == len(before) // 2
        assert client.get(f"{URL}/{first}").json()[LABEL] == 4242
        assert client.get(f"{URL}/{before[-1]['vehicle_id']}").status_code == 404
        info = client.get("/v1/stores").json()["offline_store"]
        assert info["rows"] == len(after)
        assert info["size_bytes"] == offline_copy.stat().st_size


def test_missing_file_is_unavailable_not_an_error(
    materialized: Materialized, tmp_path: Path
) -> None:
    absent = tmp_path / "nowhere" / "vehicle_features.parquet"
    settings = materialized.settings.model_copy(update={"offline_store_path": absent})
    with TestClient(create_app(settings)) as client:
        response = client.get(URL)
        assert response.status_code == 200
        assert response.json() == {
            "available": False,
            "path": str(absent),
            "last_modified": None,
            "rows": [],
        }
        by_id = client.get(f"{URL}/1")
        assert by_id.status_code == 404
        assert "no file" in by_id.json()["detail"]
        info = client.get("/v1/stores").json()["offline_store"]
        assert info["available"] is False
        assert info["size_bytes"] is None


# --- the reload rule, on a fake clock --------------------------------------------------


def test_file_is_looked_at_once_per_interval(offline_copy: Path) -> None:
    clock = FakeClock()
    store = OfflineStore(offline_copy, check_interval_s=5.0, clock=clock)
    rows = len(store.snapshot().rows)
    frame = pd.read_parquet(offline_copy)

    write_atomically(frame.iloc[:10], offline_copy)
    clock.now += 4.9
    assert len(store.snapshot().rows) == rows  # within the interval: no look at the file
    clock.now += 0.2
    assert len(store.snapshot().rows) == 10


def test_rewrite_in_place_is_seen(offline_copy: Path) -> None:
    clock = FakeClock()
    store = OfflineStore(offline_copy, check_interval_s=1.0, clock=clock)
    first = store.snapshot()
    frame = pd.read_parquet(offline_copy)
    frame[LABEL] = frame[LABEL] + 1
    frame.to_parquet(offline_copy, index=False)  # not atomic: same inode
    stat = offline_copy.stat()
    os.utime(offline_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    clock.now += 1.0

    second = store.snapshot()
    assert second is not first
    assert second.rows[0].num_reservations == (first.rows[0].num_reservations or 0) + 1


def test_unreadable_file_keeps_the_last_rows(offline_copy: Path) -> None:
    clock = FakeClock()
    store = OfflineStore(offline_copy, check_interval_s=1.0, clock=clock)
    good = store.snapshot()

    offline_copy.write_bytes(b"not parquet")
    clock.now += 1.0
    broken = store.snapshot()

    assert broken.rows == good.rows
    assert broken.available
    assert broken.error is not None
    assert "cannot read" in broken.error
    assert broken.info().error == broken.error


def test_file_without_the_feature_columns_is_refused(offline_copy: Path) -> None:
    pd.DataFrame({"vehicle_id": [1], "colour": ["red"]}).to_parquet(offline_copy, index=False)

    snapshot = OfflineStore(offline_copy).snapshot()

    assert not snapshot.available
    assert snapshot.rows == ()
    assert snapshot.error is not None
    assert "missing" in snapshot.error


def test_deleted_then_restored_file(offline_copy: Path) -> None:
    clock = FakeClock()
    store = OfflineStore(offline_copy, check_interval_s=1.0, clock=clock)
    rows = store.snapshot().rows
    saved = offline_copy.read_bytes()

    offline_copy.unlink()
    clock.now += 1.0
    assert store.snapshot().available is False
    assert store.snapshot().rows == ()

    offline_copy.write_bytes(saved)
    clock.now += 1.0
    restored = store.snapshot()
    assert restored.available
    assert restored.rows == rows
    assert restored.last_modified == datetime.fromtimestamp(offline_copy.stat().st_mtime, UTC)
