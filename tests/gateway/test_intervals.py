"""Every prediction endpoint carries the interval from the served graph; the level is
chosen by ``interval_level`` among the calibrated ones (others: 422 naming them)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.gateway.conftest import VEHICLE
from vroom_features.contract import INTERVAL_LEVELS


def _check(prediction: dict[str, Any], level: float) -> None:
    interval = prediction["prediction_interval"]
    assert set(interval) == {"lower", "upper", "level"}
    assert interval["level"] == level
    assert 0 <= interval["lower"] <= prediction["predicted_reservations"] <= interval["upper"]
    assert type(prediction["predicted_reservations"]) is float  # the contract's field as is
    assert type(prediction["model_version"]) is str


def test_every_prediction_endpoint_has_the_default_interval(client: TestClient) -> None:
    one = client.post("/predict", json=VEHICLE)
    by_id = client.post("/predict/id", json={"vehicle_id": 1})
    batch = client.post("/predict/batch", json=[VEHICLE, {**VEHICLE, "num_images": 15}])
    for response in (one, by_id, batch):
        assert response.status_code == 200, response.text
    _check(one.json(), 0.8)
    _check(by_id.json(), 0.8)
    for item in batch.json()["predictions"]:
        _check(item, 0.8)


def test_higher_levels_are_wider(client: TestClient) -> None:
    widths = []
    for level in INTERVAL_LEVELS:
        body = client.post("/predict", params={"interval_level": level}, json=VEHICLE).json()
        _check(body, level)
        widths.append(body["prediction_interval"]["upper"] - body["prediction_interval"]["lower"])
    assert widths == sorted(widths)
    assert widths[-1] > widths[0]
    batch = client.post("/predict/batch", params={"interval_level": 0.95}, json=[VEHICLE]).json()
    _check(batch["predictions"][0], 0.95)


def test_an_uncalibrated_level_is_a_422_naming_the_allowed_ones(client: TestClient) -> None:
    for path, body in (
        ("/predict", VEHICLE),
        ("/predict/id", {"vehicle_id": 1}),
        ("/predict/batch", [VEHICLE]),
    ):
        for level in ("0.7", "abc", "1"):
            answer = client.post(path, params={"interval_level": level}, json=body)
            assert answer.status_code == 422, (path, level)
            (error,) = answer.json()["detail"]
            assert error["loc"] == ["query", "interval_level"]
        refused = client.post(path, params={"interval_level": "0.7"}, json=body).json()
        assert "one of 0.5, 0.8, 0.9, 0.95" in refused["detail"][0]["msg"]
