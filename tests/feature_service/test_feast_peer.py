"""The benchmark's peer: Feast's own feature server (``feast serve``), started the way
``vroom bench`` starts it, on the same registry and Redis, answers the features our
online lookup answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import free_ports
from tests.feature_service.conftest import Materialized
from vroom_cli.bench_probe import FeastPeer, feast_request, feast_values
from vroom_features import FEATURE_NAMES


@pytest.fixture(scope="module")
def peer(materialized: Materialized) -> Iterator[FeastPeer]:
    server = FeastPeer(materialized.settings, free_ports(1)[0])
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert server.process is None


def test_feast_serve_answers_our_features(
    peer: FeastPeer, client: TestClient, fleet: list[dict[str, Any]]
) -> None:
    assert "feast serve" in peer.pids
    for vehicle in fleet[:25]:
        vehicle_id = vehicle["vehicle_id"]
        ours = client.post("/v1/features/online", json={"vehicle_ids": [vehicle_id]}).json()
        answer = httpx.post(f"{peer.url}/get-online-features", json=feast_request(vehicle_id))
        answer.raise_for_status()

        theirs = feast_values(answer.json())

        (found,) = ours["found"]
        assert {name: theirs[name] for name in FEATURE_NAMES} == {
            name: found[name] for name in FEATURE_NAMES
        }
