"""POST /v1/features/online: lookups of known and unknown ids in the Feast online store."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vroom_features import FEATURE_NAMES, FEATURES, feature_row

URL = "/v1/features/online"
UNKNOWN = [10**9, 10**9 + 1]


def assert_clean(vector: dict[str, Any]) -> None:
    """Every feature present, of its kind, finite: never a NaN passed on."""
    assert set(vector) == {"vehicle_id", *FEATURE_NAMES}
    for feature in FEATURES:
        value = vector[feature.name]
        assert isinstance(value, int if feature.kind == "int" else (int, float)), feature
        assert math.isfinite(value)


def test_known_ids(client: TestClient, fleet: list[dict[str, Any]]) -> None:
    vehicles = fleet[:3]

    response = client.post(URL, json={"vehicle_ids": [v["vehicle_id"] for v in vehicles]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["missing"] == []
    assert [v["vehicle_id"] for v in body["found"]] == [v["vehicle_id"] for v in vehicles]
    for vector, vehicle in zip(body["found"], vehicles, strict=True):
        assert_clean(vector)
        assert [vector[name] for name in FEATURE_NAMES] == feature_row(vehicle)


def test_unknown_ids_come_back_as_missing(client: TestClient, fleet: list[dict[str, Any]]) -> None:
    known = fleet[0]["vehicle_id"]

    response = client.post(URL, json={"vehicle_ids": [UNKNOWN[0], known, UNKNOWN[1]]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["missing"] == UNKNOWN
    (vector,) = body["found"]
    assert vector["vehicle_id"] == known
    assert_clean(vector)  # a missing row in the same batch must not turn ints into NaN floats


def test_only_unknown_ids(client: TestClient) -> None:
    response = client.post(URL, json={"vehicle_ids": UNKNOWN})

    assert response.status_code == 200
    assert response.json() == {"found": [], "missing": UNKNOWN}


def test_repeated_ids_come_back_once(client: TestClient, fleet: list[dict[str, Any]]) -> None:
    first, second = fleet[0]["vehicle_id"], fleet[1]["vehicle_id"]

    response = client.post(URL, json={"vehicle_ids": [second, first, second, UNKNOWN[0]] * 2})

    body = response.json()
    assert [v["vehicle_id"] for v in body["found"]] == [second, first]
    assert body["missing"] == [UNKNOWN[0]]


def test_whole_fleet_in_one_call(client: TestClient, fleet: list[dict[str, Any]]) -> None:
    ids = [v["vehicle_id"] for v in fleet]
    assert len(ids) == 1000

    response = client.post(URL, json={"vehicle_ids": ids})

    body = response.json()
    assert body["missing"] == []
    assert [v["vehicle_id"] for v in body["found"]] == ids


@pytest.mark.parametrize(
    ("ids", "loc", "rule"),
    [
        ([0], ["body", "vehicle_ids", 0], "greater than 0"),
        ([3, -5], ["body", "vehicle_ids", 1], "greater than 0"),
        (["abc"], ["body", "vehicle_ids", 0], "valid integer"),
        ([2**63], ["body", "vehicle_ids", 0], "less than or equal to 9223372036854775807"),
        ([], ["body", "vehicle_ids"], "at least 1 item"),
        (list(range(1, 1002)), ["body", "vehicle_ids"], "at most 1000 items"),
    ],
)
def test_bad_ids_name_the_rule(
    client: TestClient, ids: list[object], loc: list[object], rule: str
) -> None:
    response = client.post(URL, json={"vehicle_ids": ids})

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == loc
    assert rule in error["msg"]
