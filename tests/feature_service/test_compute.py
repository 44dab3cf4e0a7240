"""POST /v1/features/compute: raw attributes in, the feature matrix out; bad bodies -> 422."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.feature_service.conftest import random_vehicles
from vroom_features import FEATURE_NAMES, compute_features

URL = "/v1/features/compute"
VEHICLE = {
    "technology": 1,
    "actual_price": 52.35,
    "recommended_price": 43.5,
    "num_images": 6,
    "street_parked": 0,
    "description": 180,
}


def test_one_vehicle(client: TestClient) -> None:
    response = client.post(URL, json={"vehicles": [VEHICLE]})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "feature_names": list(FEATURE_NAMES),
        "features": [[1.0, 6.0, 0.0, 180.0, 8.85, 1.2034]],  # 52.35 / 43.5 = 1.20345...
    }


@pytest.mark.parametrize("n", [1, 2, 257, 1000])
def test_many_vehicles_equal_the_batch_transform(client: TestClient, n: int) -> None:
    vehicles = random_vehicles(n, seed=n)

    response = client.post(URL, json={"vehicles": vehicles})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["feature_names"] == list(FEATURE_NAMES)
    expected = compute_features(pd.DataFrame(vehicles)).astype(float).to_numpy().tolist()
    assert body["features"] == expected  # exact: both paths run the same expressions


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("technology", 2, "less than or equal to 1"),
        ("street_parked", -1, "greater than or equal to 0"),
        ("actual_price", 0, "greater than 0"),
        ("recommended_price", "cheap", "valid number"),
        ("num_images", 1.5, "valid integer"),
        ("description", None, "valid integer"),
    ],
)
def test_bad_field_value_names_field_and_rule(
    client: TestClient, field: str, value: object, rule: str
) -> None:
    vehicles = [VEHICLE, {**VEHICLE, field: value}]

    response = client.post(URL, json={"vehicles": vehicles})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "vehicles", 1, field]
    assert rule in error["msg"]


def test_missing_fields_are_refused_and_unknown_ones_ignored(client: TestClient) -> None:
    incomplete = {k: v for k, v in VEHICLE.items() if k != "num_images"}
    response = client.post(URL, json={"vehicles": [incomplete, {**VEHICLE, "colour": "red"}]})

    assert response.status_code == 422
    errors = {(tuple(e["loc"]), e["type"]) for e in response.json()["detail"]}
    assert errors == {(("body", "vehicles", 0, "num_images"), "missing")}


def test_booleans_and_strings_are_not_numbers(client: TestClient) -> None:
    bad = {**VEHICLE, "description": False, "actual_price": "12.5", "num_images": 2.5}
    response = client.post(URL, json={"vehicles": [bad]})

    assert response.status_code == 422
    errors = {(e["loc"][-1], e["type"]) for e in response.json()["detail"]}
    assert errors == {
        ("description", "int_type"),
        ("actual_price", "float_type"),
        ("num_images", "int_type"),
    }


def test_more_than_1000_vehicles_names_the_limit(client: TestClient) -> None:
    response = client.post(URL, json={"vehicles": [VEHICLE] * 1001})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "vehicles"]
    assert "at most 1000 items" in error["msg"]


def test_empty_list_is_refused(client: TestClient) -> None:
    response = client.post(URL, json={"vehicles": []})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "vehicles"]
    assert "at least 1 item" in error["msg"]


def test_body_that_is_not_json_is_refused(client: TestClient) -> None:
    response = client.post(URL, content=b"{vehicles", headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
