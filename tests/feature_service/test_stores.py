"""GET /v1/stores: offline file, online store and the registry's feature view."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.feature_service.conftest import Materialized
from vroom_feature_service.online import public_url
from vroom_features import FEATURE_NAMES


def test_store_info(client: TestClient, materialized: Materialized) -> None:
    settings = materialized.settings

    response = client.get("/v1/stores")

    assert response.status_code == 200, response.text
    body = response.json()
    offline = body["offline_store"]
    path = settings.offline_store_path
    assert offline["available"] is True
    assert offline["type"] == "parquet"
    assert offline["path"] == str(path)
    assert offline["size_bytes"] == path.stat().st_size
    # Unix seconds, as the Ray Serve version's clients parse it (SPEC wire types).
    assert type(offline["last_modified"]) is float
    assert abs(offline["last_modified"] - path.stat().st_mtime) < 1e-3
    assert offline["rows"] == materialized.fleet_size
    assert offline["error"] is None

    online = body["online_store"]
    assert online["available"] is True
    assert online["type"] == "redis"
    assert online["redis_url"] == settings.redis_url
    assert online["keys"] == materialized.fleet_size  # one key per vehicle in this database
    assert online["used_memory_human"][-1] in "BKMG"
    assert online["error"] is None

    assert body["feature_view"] == {
        "name": "vehicle_features",
        "entity": "vehicle",
        "entity_key": "vehicle_id",
        "features": list(FEATURE_NAMES),
        "label": "num_reservations",
        "ttl_days": 365,
    }


def test_redis_url_is_shown_without_password() -> None:
    assert public_url("redis://:s3cret@redis:6379/0") == "redis://redis:6379/0"
    assert public_url("rediss://app:s3cret@redis.example/2") == "rediss://app@redis.example/2"
    assert public_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
