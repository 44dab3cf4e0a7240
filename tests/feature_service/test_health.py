"""Liveness and readiness, and how each endpoint answers when a dependency is missing."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.feature_service.conftest import Materialized
from vroom_common.settings import Settings
from vroom_feature_service.app import create_app

VEHICLE = {
    "technology": 0,
    "actual_price": 80.0,
    "recommended_price": 90.0,
    "num_images": 2,
    "street_parked": 1,
    "description": 40,
}


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz(client: TestClient, materialized: Materialized) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "feature_view": "vehicle_features",
        "redis_url": materialized.settings.redis_url,
    }


def test_redis_down(dead_redis_settings: Settings) -> None:
    with TestClient(create_app(dead_redis_settings)) as client:
        assert client.get("/healthz").status_code == 200

        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith("redis is unavailable: redis://127.0.0.1:")

        started = time.perf_counter()
        lookup = client.post("/v1/features/online", json={"vehicle_ids": [1]})
        elapsed = time.perf_counter() - started
        assert lookup.status_code == 503
        assert lookup.json()["detail"].startswith("redis is unavailable")
        assert elapsed < 2.0, "a down Redis must fail fast, not after redis-py's retries"

        stores = client.get("/v1/stores")
        assert stores.status_code == 200
        online = stores.json()["online_store"]
        assert online["available"] is False
        assert online["keys"] is None
        assert "redis is unavailable" in online["error"]

        # what needs no Redis still works
        assert client.post("/v1/features/compute", json={"vehicles": [VEHICLE]}).status_code == 200
        assert client.get("/v1/features/offline").json()["available"] is True


def test_feature_view_not_registered(materialized: Materialized, tmp_path: Path) -> None:
    """A fresh state (materialization never ran): Redis is up, the registry is empty;
    then the registry appears."""
    settings = materialized.settings.model_copy(
        update={
            "feast_registry_path": tmp_path / "feast" / "registry.db",
            "offline_store_path": tmp_path / "offline" / "vehicle_features.parquet",
        }
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"] == (
            "feast registry is unavailable: feature view 'vehicle_features' is not "
            "registered (run `vroom materialize`)"
        )
        lookup = client.post("/v1/features/online", json={"vehicle_ids": [1]})
        assert lookup.status_code == 503
        assert "not registered" in lookup.json()["detail"]
        stores = client.get("/v1/stores").json()
        assert stores["feature_view"] is None
        assert stores["online_store"]["available"] is True
        assert stores["offline_store"]["available"] is False

        # Materialization registers the view: the next lookup sees it, without waiting
        # for Feast's registry cache to expire.
        shutil.copy2(materialized.settings.feast_registry_path, settings.feast_registry_path)
        lookup = client.post("/v1/features/online", json={"vehicle_ids": [1]})
        assert lookup.status_code == 200, lookup.text
        assert [v["vehicle_id"] for v in lookup.json()["found"]] == [1]
        assert client.get("/readyz").status_code == 200
