"""Every endpoint of the API against the running stack, with the real data when present."""

from __future__ import annotations

import csv
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Stack
from tests.realdata import REAL_DATA_DIR
from vroom_cli.bench import SAMPLE_VEHICLE
from vroom_common.schemas import RAW_ATTRIBUTES
from vroom_pipelines.train import MODEL_FEATURES

pytestmark = pytest.mark.integration

#: The vehicle the load benchmark sends, a valid VehicleFeatures body.
VEHICLE = SAMPLE_VEHICLE


def fleet(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/vehicles")
    assert response.status_code == 200
    return [v for v in response.json() if v["source"] == "csv"]


def test_health_serves_the_champion(api: httpx.Client, stack: Stack) -> None:
    body = api.get("/health").json()
    assert body["status"] == "ok"
    assert body["model_version"] == stack.champion_version
    assert body["feast_online"] is True
    assert body["mlflow_uri"] == stack.settings.mlflow_uri
    assert body["model_name"] == stack.settings.model_name


def test_vehicles_lists_the_seeded_fleet(api: httpx.Client, stack: Stack) -> None:
    vehicles = fleet(api)
    if stack.real_data:
        with (REAL_DATA_DIR / "vehicles.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(vehicles) == len(rows) == 1000
        first = next(v for v in vehicles if v["vehicle_id"] == int(rows[0]["vehicle_id"]))
        assert first["actual_price"] == pytest.approx(float(rows[0]["actual_price"]))
        with (REAL_DATA_DIR / "reservations.csv").open() as f:
            reservations = sum(1 for _ in csv.DictReader(f))
        assert sum(v["num_reservations"] for v in vehicles) == reservations
    assert all(set(RAW_ATTRIBUTES) <= set(v) for v in vehicles)


def test_predict_raw_by_id_and_batch_agree(api: httpx.Client, stack: Stack) -> None:
    vehicles = fleet(api)[:1000]
    batch = api.post("/predict/batch", json=[{k: v[k] for k in RAW_ATTRIBUTES} for v in vehicles])
    assert batch.status_code == 200
    predictions = batch.json()["predictions"]
    assert len(predictions) == len(vehicles)
    assert {p["model_version"] for p in predictions} == {stack.champion_version}
    for vehicle, batched in list(zip(vehicles, predictions, strict=True))[:20]:
        raw = api.post("/predict", json={k: vehicle[k] for k in RAW_ATTRIBUTES}).json()
        by_id = api.post("/predict/id", json={"vehicle_id": vehicle["vehicle_id"]}).json()
        assert raw == by_id == batched
        assert raw["predicted_reservations"] == round(raw["predicted_reservations"], 2)


def test_predict_errors(api: httpx.Client) -> None:
    over = api.post("/predict/batch", json=[VEHICLE] * 1001)
    assert over.status_code == 422
    assert "1000" in over.text
    bad = api.post("/predict", json={**VEHICLE, "actual_price": -1})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][-1] == "actual_price"
    assert api.post("/predict/id", json={"vehicle_id": 99_999_999}).status_code == 404
    assert api.post("/predict/id", json={"vehicle_id": 0}).status_code == 422


def test_benchmarks_measure_both_paths(api: httpx.Client, stack: Stack) -> None:
    raw = api.post("/benchmark", json={"vehicle": VEHICLE, "n_iterations": 50}).json()
    assert raw["n_iterations"] == 50
    assert raw["source"] == "raw"
    assert raw["model_version"] == stack.champion_version
    assert 0 < raw["p50_latency_ms"] <= raw["p95_latency_ms"] <= raw["p99_latency_ms"]
    assert raw["avg_latency_ms"] == pytest.approx(
        raw["avg_features_ms"] + raw["avg_predict_ms"], rel=1e-3
    )
    online = api.post("/benchmark/id", json={"vehicle_id": 1, "n_iterations": 20}).json()
    assert online["source"] == "online_store"
    assert online["n_iterations"] == 20
    assert api.post("/benchmark/id", json={"vehicle_id": 99_999_999}).status_code == 404


def test_benchmark_stops_at_the_time_budget(api: httpx.Client, stack: Stack) -> None:
    response = api.post("/benchmark", json={"vehicle": VEHICLE, "n_iterations": 100_000})
    assert response.status_code == 200
    body = response.json()
    assert 1 <= body["n_iterations"] < 100_000
    assert response.elapsed.total_seconds() < stack.settings.benchmark_budget_s + 2


def test_features_offline_first(api: httpx.Client) -> None:
    one = api.get("/vehicles/1/features").json()
    assert one["store"] == "offline"
    assert one["materialized"] is True
    vehicle = next(v for v in fleet(api) if v["vehicle_id"] == 1)
    assert one["price_diff"] == pytest.approx(
        vehicle["actual_price"] - vehicle["recommended_price"], abs=0.01
    )
    everyone = api.get("/vehicles/features").json()
    assert {row["vehicle_id"] for row in everyone} >= {v["vehicle_id"] for v in fleet(api)}
    assert all(row["store"] == "offline" for row in everyone if row["vehicle_id"] == 1)
    assert api.get("/vehicles/99999999/features").status_code == 404


def test_stores_and_model(api: httpx.Client, stack: Stack) -> None:
    stores = api.get("/stores").json()
    assert stores["offline_store"]["available"] is True
    assert stores["online_store"]["available"] is True
    assert stores["online_store"]["keys"] >= 1
    assert stores["feature_view"]["features"] == [
        "technology",
        "num_images",
        "street_parked",
        "description",
        "price_diff",
        "price_ratio",
    ]
    model = api.get("/model").json()
    assert model["version"] == stack.champion_version
    assert model["metrics"]["cv_mae_mean"] > 0
    # The model uses four of the six features (docs/model.md).
    assert set(model["feature_importances"]) == set(MODEL_FEATURES)


def test_reload_of_the_serving_champion_is_unchanged(api: httpx.Client, stack: Stack) -> None:
    body = api.post("/reload").json()
    assert body["current_version"] == stack.champion_version
    assert body["status"] in ("unchanged", "reloaded")
    again = api.post("/reload").json()
    assert again == {
        "status": "unchanged",
        "previous_version": stack.champion_version,
        "current_version": stack.champion_version,
    }


def test_docs_metrics_and_request_ids(api: httpx.Client) -> None:
    assert api.get("/docs").status_code == 200
    response = api.post("/predict", json=VEHICLE, headers={"X-Request-ID": "e2e-trace-1"})
    assert response.headers["X-Request-ID"] == "e2e-trace-1"
    assert len(api.get("/health").headers["X-Request-ID"]) == 32
    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics").text)}
    predicts = [
        sample
        for sample in families["http_requests"].samples
        if sample.name == "http_requests_total"
        and sample.labels
        == {"service": "gateway", "route": "/predict", "method": "POST", "status": "200"}
    ]
    assert predicts
    assert predicts[0].value >= 1
    served = families["vroom_model_version_served"].samples
    assert any(s.value == 1 and s.labels["version"] for s in served)
