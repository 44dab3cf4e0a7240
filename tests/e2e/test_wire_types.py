"""The JSON types of every response, as the Ray Serve version's clients parse them
(SPEC.md, "Field types on the wire"): strings never null, integers never floats or
booleans, ``last_modified`` a Unix time in seconds. Checked on live answers of the
whole stack, by exact Python type of the decoded JSON (``bool`` is not an ``int``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from vroom_cli.bench import SAMPLE_VEHICLE as VEHICLE

pytestmark = pytest.mark.integration


STRING = (str,)
INTEGER = (int,)
NUMBER = (int, float)
BOOLEAN = (bool,)
NULL = (type(None),)


def check(body: dict[str, Any], types: dict[str, tuple[type, ...]], where: str) -> None:
    for name, allowed in types.items():
        assert name in body, f"{where}: {name} is missing"
        value = body[name]
        assert type(value) in allowed, f"{where}: {name} = {value!r} is not {allowed}"


def test_health_prediction_reload_benchmark(api: httpx.Client) -> None:
    check(
        api.get("/health").json(),
        {
            "status": STRING,
            "model_name": STRING,
            "model_version": STRING,
            "mlflow_uri": STRING,
            "feast_online": BOOLEAN,
        },
        "health",
    )
    prediction = {"predicted_reservations": NUMBER, "model_version": STRING}
    check(api.post("/predict", json=VEHICLE).json(), prediction, "prediction")
    check(api.post("/predict/id", json={"vehicle_id": 1}).json(), prediction, "prediction")
    for item in api.post("/predict/batch", json=[VEHICLE] * 3).json()["predictions"]:
        check(item, prediction, "batch prediction")
    check(
        api.post("/reload").json(),
        {"status": STRING, "previous_version": STRING, "current_version": STRING},
        "reload",
    )
    benchmark = {
        "n_iterations": INTEGER,
        "avg_latency_ms": NUMBER,
        "p50_latency_ms": NUMBER,
        "p95_latency_ms": NUMBER,
        "p99_latency_ms": NUMBER,
        "avg_features_ms": NUMBER,
        "avg_predict_ms": NUMBER,
        "model_version": STRING,
        "source": STRING,
    }
    check(
        api.post("/benchmark", json={"vehicle": VEHICLE, "n_iterations": 3}).json(),
        benchmark,
        "benchmark",
    )
    check(
        api.post("/benchmark/id", json={"vehicle_id": 1, "n_iterations": 3}).json(),
        benchmark,
        "benchmark/id",
    )


def test_vehicles_and_features(api: httpx.Client) -> None:
    saved = api.post("/vehicles", json=VEHICLE).json()
    check(saved, {"vehicle_id": INTEGER, "status": STRING, "event_published": BOOLEAN}, "save")
    record = {
        "vehicle_id": INTEGER,
        "technology": INTEGER,
        "num_images": INTEGER,
        "street_parked": INTEGER,
        "description": INTEGER,
        "actual_price": NUMBER,
        "recommended_price": NUMBER,
        "source": STRING,
        "num_reservations": INTEGER + NULL,
    }
    vehicles = api.get("/vehicles").json()
    for vehicle in vehicles:
        check(vehicle, record, "vehicle record")
    assert {type(v["num_reservations"]) for v in vehicles} == {int, type(None)}
    features = {
        "vehicle_id": INTEGER,
        "technology": INTEGER + NULL,
        "num_images": INTEGER + NULL,
        "street_parked": INTEGER + NULL,
        "description": INTEGER + NULL,
        "price_diff": NUMBER + NULL,
        "price_ratio": NUMBER + NULL,
        "materialized": BOOLEAN,
        "store": STRING,
    }
    for row in api.get("/vehicles/features").json():
        check(row, features, "vehicle features")
    check(api.get("/vehicles/1/features").json(), features, "vehicle features")
    deleted = api.delete(f"/vehicles/{saved['vehicle_id']}").json()
    check(deleted, {"vehicle_id": INTEGER, "status": STRING}, "delete")


def test_stores(api: httpx.Client) -> None:
    body = api.get("/stores").json()
    store = {
        "available": BOOLEAN,
        "type": STRING,
        "size_bytes": INTEGER + NULL,
        "last_modified": NUMBER + NULL,
    }
    offline = body["offline_store"]
    check(offline, {**store, "path": STRING + NULL}, "offline store")
    assert type(offline["last_modified"]) is float  # the file exists in this stack
    assert offline["last_modified"] > 1.6e9  # seconds, not milliseconds or a date
    online = body["online_store"]
    check(
        online,
        {
            "available": BOOLEAN,
            "type": STRING,
            "keys": INTEGER + NULL,
            "used_memory_human": STRING + NULL,
            "redis_url": STRING + NULL,
        },
        "online store",
    )
    view = body["feature_view"]
    check(
        view,
        {
            "name": STRING,
            "entity": STRING,
            "entity_key": STRING,
            "label": STRING,
            "features": (list,),
            "ttl_days": INTEGER + NULL,
        },
        "feature view",
    )
    assert all(type(name) is str for name in view["features"])


def test_trigger(api: httpx.Client) -> None:
    answer = api.post("/materialize")
    assert answer.status_code == 200, answer.text
    check(
        answer.json(),
        {"status": STRING, "dag_id": STRING, "dag_run_id": STRING + NULL},
        "trigger",
    )
