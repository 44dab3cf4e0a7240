"""A real predictor and a real feature service for the gateway, and apps over them.

One stack per package, in its own state dir on free ports and a Redis database of its
own (other tests flush database 0): a synthetic fleet seeded and materialized (the
online store the feature service reads), a registered model whose champion is a copy
of the session champion's model (as ``tests/predictor/conftest.py`` does), then
``vroom_cli.stack.up`` starts ``predictor`` and ``features`` with these settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from kserve import InferenceGRPCClient, InferInput, InferRequest

from tests.conftest import free_ports, start_stack
from tests.predictor.conftest import Served, predictor_settings
from vroom_cli.stack import down
from vroom_db import one_off_session
from vroom_db.queries import raw_vehicles
from vroom_features.contract import INPUT_DATATYPE, INPUT_NAME
from vroom_gateway.app import create_app
from vroom_gateway.settings import GatewaySettings
from vroom_pipelines.materialize import materialize
from vroom_pipelines.seed import seed_synthetic

#: The shared Redis database these tests own.
REDIS_DB = 7
#: Vehicles of the synthetic fleet.
FLEET_SIZE = 50


@pytest.fixture(scope="package")
def served(
    champion_model_dir: Path,
    stack_settings: GatewaySettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """Predictor + feature service running; the predictor serves its champion."""
    model_dir = champion_model_dir
    base = predictor_settings(stack_settings, tmp_path_factory.mktemp("gateway") / "state")
    host, port = base.redis_host_port
    (feature_port,) = free_ports(1)
    settings = base.with_overrides(
        redis_url=f"redis://{host}:{port}/{REDIS_DB}", feature_service_port=feature_port
    )
    redis_client = redis.Redis.from_url(settings.redis_url)
    redis_client.flushdb()
    redis_client.close()
    seed_synthetic(settings, FLEET_SIZE)
    materialize(settings)
    served = Served(settings, model_dir)
    version = served.promote_new_version()
    start_stack(settings, ("predictor", "features"))
    try:
        served.wait_version(version)
        yield served
    finally:
        down(settings)


@pytest.fixture(scope="package")
def client(served: Served) -> Iterator[TestClient]:
    """The gateway over the running services, its lifespan running."""
    with TestClient(create_app(served.settings)) as test_client:
        yield test_client


@pytest.fixture(scope="package")
def fleet(served: Served) -> list[dict[str, Any]]:
    """Id, raw attributes and source of every seeded vehicle."""
    with one_off_session(served.settings.database_url) as session:
        return raw_vehicles(session)


def dead_port() -> int:
    (port,) = free_ports(1)
    return port


def predictor_answer(served: Served, features: np.ndarray) -> tuple[list[float], str]:
    """The predictor's own answer (KServe's gRPC client) and the version it reports."""

    async def call() -> tuple[list[float], str]:
        tensor = InferInput(INPUT_NAME, list(features.shape), INPUT_DATATYPE)
        tensor.set_data_from_numpy(features.astype(np.float32))
        request = InferRequest(served.settings.model_name, infer_inputs=[tensor])
        async with InferenceGRPCClient(served.grpc, timeout=10, retries=0) as grpc_client:
            response = await grpc_client.infer(request)
        values = response.outputs[0].as_numpy().tolist()
        return [float(v) for v in values], str(response.model_version)

    return asyncio.run(call())


VEHICLE: dict[str, Any] = {
    "technology": 1,
    "actual_price": 67.85,
    "recommended_price": 59.0,
    "num_images": 5,
    "street_parked": 0,
    "description": 7,
}
