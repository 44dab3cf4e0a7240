"""One materialized state for the feature-service tests, and an app over it.

The package seeds the real fleet (or, without the real data, a synthetic fleet of
1,000), materializes it once into its own state dir and a Redis database of its own
(other tests flush database 0 of the shared Redis), and serves it through
``TestClient(create_app(settings))``: real Redis, real Feast registry, real Parquet.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import free_ports
from tests.realdata import REAL_DATA_DIR
from vroom_common.settings import Settings
from vroom_db import one_off_session
from vroom_db.queries import raw_vehicles
from vroom_feature_service.app import create_app
from vroom_pipelines.materialize import materialize
from vroom_pipelines.seed import seed_from_dir, seed_synthetic

#: The shared Redis database these tests own.
REDIS_DB = 5
#: Fleet size of the synthetic fallback (the real fleet has 1,000 too).
SYNTHETIC_FLEET = 1000


class Materialized(NamedTuple):
    settings: Settings
    real_data: bool
    fleet_size: int


@pytest.fixture(scope="package")
def materialized(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Materialized:
    host, port = stack_settings.redis_host_port
    settings = stack_settings.with_overrides(
        state_dir=tmp_path_factory.mktemp("feature-service") / "state",
        redis_url=f"redis://{host}:{port}/{REDIS_DB}",
    )
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    client.close()
    real_data = (REAL_DATA_DIR / "vehicles.csv").is_file()
    if real_data:
        seed_from_dir(settings, REAL_DATA_DIR)
    else:
        seed_synthetic(settings, SYNTHETIC_FLEET)
    summary = materialize(settings)
    return Materialized(settings, real_data, summary.fleet_rows)


@pytest.fixture(scope="package")
def fleet(materialized: Materialized) -> list[dict[str, Any]]:
    """Id, the six raw attributes and source of every vehicle, from the database."""
    with one_off_session(materialized.settings.database_url) as session:
        return raw_vehicles(session)


@pytest.fixture(scope="package")
def client(materialized: Materialized) -> Iterator[TestClient]:
    """The app over the materialized state, its lifespan running."""
    with TestClient(create_app(materialized.settings)) as test_client:
        yield test_client


@pytest.fixture
def dead_redis_settings(materialized: Materialized) -> Settings:
    """The materialized state, but Redis on a port nothing listens on."""
    (port,) = free_ports(1)
    return materialized.settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})


def random_vehicles(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` valid request bodies of raw attributes (prices with cents, as hosts type them)."""
    rng = random.Random(seed)
    return [
        {
            "technology": rng.randint(0, 1),
            "actual_price": round(rng.uniform(10, 300), 2),
            "recommended_price": round(rng.uniform(10, 300), 2),
            "num_images": rng.randint(0, 20),
            "street_parked": rng.randint(0, 1),
            "description": rng.randint(0, 500),
        }
        for _ in range(n)
    ]
