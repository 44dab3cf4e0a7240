"""``/predict``, ``/predict/batch``, ``/predict/id`` against a real predictor and feature
service."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.gateway.conftest import VEHICLE, dead_port, predictor_answer
from tests.predictor.conftest import Served
from vroom_cli.bench_probe import STAGES, scrape_text, stage_means
from vroom_gateway.app import create_app

pytestmark = pytest.mark.integration


def computed(served: Served, vehicles: list[dict[str, Any]]) -> np.ndarray:
    base = f"http://127.0.0.1:{served.settings.feature_service_port}"
    response = httpx.post(f"{base}/v1/features/compute", json={"vehicles": vehicles}, timeout=10)
    response.raise_for_status()
    return np.asarray(response.json()["features"], dtype=np.float32)


def test_predict_equals_the_predictors_answer(client: TestClient, served: Served) -> None:
    values, version = predictor_answer(served, computed(served, [VEHICLE]))

    response = client.post("/predict", json=VEHICLE)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body.pop("prediction_interval")["level"] == 0.8  # tests/gateway/test_intervals.py
    assert body == {
        "predicted_reservations": round(values[0], 2),
        "model_version": version,
    }


def test_batch_of_three_in_order(client: TestClient, served: Served) -> None:
    vehicles = [
        VEHICLE,
        {**VEHICLE, "technology": 0, "num_images": 1},
        {**VEHICLE, "actual_price": 150.5, "description": 300},
    ]
    values, version = predictor_answer(served, computed(served, vehicles))

    response = client.post("/predict/batch", json=vehicles)

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    for item in predictions:
        assert item.pop("prediction_interval")["level"] == 0.8
    assert predictions == [
        {"predicted_reservations": round(v, 2), "model_version": version} for v in values
    ]


def test_empty_batch_calls_nothing(served: Served) -> None:
    settings = served.settings.model_copy(
        update={
            "predictor_grpc_target": f"127.0.0.1:{dead_port()}",
            "feature_service_url": f"http://127.0.0.1:{dead_port()}",
        }
    )
    with TestClient(create_app(settings)) as dead:
        response = dead.post("/predict/batch", json=[])
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": []}


def test_batch_over_the_limit_names_it(client: TestClient) -> None:
    response = client.post("/predict/batch", json=[VEHICLE] * 1001)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert "at most 1000 items" in error["msg"]


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("technology", 2, "less than or equal to 1"),
        ("actual_price", 0, "greater than 0"),
        ("num_images", -1, "greater than or equal to 0"),
    ],
)
def test_bad_field_is_422_naming_field_and_rule(
    client: TestClient, field: str, value: Any, rule: str
) -> None:
    response = client.post("/predict", json={**VEHICLE, field: value})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == field
    assert rule in error["msg"]


def test_predict_id_equals_predict_on_its_raw_attributes(
    client: TestClient, fleet: list[dict[str, Any]]
) -> None:
    vehicle = fleet[0]
    raw = {k: v for k, v in vehicle.items() if k in VEHICLE}

    by_id = client.post("/predict/id", json={"vehicle_id": vehicle["vehicle_id"]})
    by_raw = client.post("/predict", json=raw)

    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == by_raw.json()


def test_predict_unknown_id_is_404(client: TestClient) -> None:
    response = client.post("/predict/id", json={"vehicle_id": 987654})
    assert response.status_code == 404
    assert response.json() == {"detail": "vehicle 987654 not found in the online store"}


def test_predict_id_must_be_positive(client: TestClient) -> None:
    response = client.post("/predict/id", json={"vehicle_id": 0})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "vehicle_id"


@pytest.mark.parametrize(
    ("route", "body"),
    [("/predict", VEHICLE), ("/predict/batch", [VEHICLE] * 3), ("/predict/id", None)],
)
def test_each_prediction_times_its_stages(
    client: TestClient, fleet: list[dict[str, Any]], route: str, body: Any
) -> None:
    """Every stage of ``vroom_gateway_stage_seconds`` counts the request once, and the
    stages add up to no more than the gateway's own clock for it (what ``vroom bench``
    reads from two scrapes)."""
    before = scrape_text(client.get("/metrics").text)
    payload = {"vehicle_id": fleet[0]["vehicle_id"]} if body is None else body
    assert client.post(route, json=payload).status_code == 200
    after = scrape_text(client.get("/metrics").text)

    means = stage_means(before, after, route)
    assert means is not None
    assert all(means[stage] >= 0 for stage in STAGES)
    assert means["features"] > 0
    assert means["inference"] > 0
    assert sum(means[stage] for stage in STAGES) <= means["server"]
    assert means["other"] >= 0
