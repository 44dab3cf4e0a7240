"""Whole-system flows over HTTP: a new arrival from save to prediction, SSE resume, a
training run that promotes a new model while traffic flows."""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import cloudpickle
import httpx
import mlflow
import pandas as pd
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient
from sklearn.dummy import DummyRegressor

from tests.e2e.conftest import Listener, Stack
from tests.e2e.test_api import VEHICLE
from vroom_common.events import DAG_PIPELINE
from vroom_common.settings import Settings
from vroom_features.prediction_files import read_log
from vroom_pipelines.outcomes import join_outcomes
from vroom_registry import ALIAS_CHAMPION, MODEL_ARTIFACT_PATH

pytestmark = pytest.mark.integration


def test_new_arrival_is_materialized_predicted_and_deleted(api: httpx.Client, stack: Stack) -> None:
    with Listener(stack.url, "/vehicles/events") as events:
        saved = api.post("/vehicles", json=VEHICLE).json()
        assert saved["status"] == "saved"
        assert saved["event_published"] is True
        vehicle_id = saved["vehicle_id"]
        _event, payload = events.wait_for(lambda p: p.get("vehicle_id") == vehicle_id)
    assert payload == {"type": "vehicle-materialized", "vehicle_id": vehicle_id}

    by_id = api.post("/predict/id", json={"vehicle_id": vehicle_id}).json()
    assert by_id == api.post("/predict", json=VEHICLE).json()
    features = api.get(f"/vehicles/{vehicle_id}/features").json()
    assert features["store"] == "online"
    assert features["price_diff"] == pytest.approx(-5.0)
    listed = {v["vehicle_id"]: v for v in api.get("/vehicles").json()}
    assert listed[vehicle_id]["source"] == "ui"
    assert listed[vehicle_id]["num_reservations"] is None

    assert api.delete(f"/vehicles/{vehicle_id}").json() == {
        "status": "deleted",
        "vehicle_id": vehicle_id,
    }
    assert api.post("/predict/id", json={"vehicle_id": vehicle_id}).status_code == 404
    assert api.get(f"/vehicles/{vehicle_id}/features").status_code == 404
    assert api.delete(f"/vehicles/{vehicle_id}").status_code == 404
    fleet_delete = api.delete("/vehicles/1")
    assert fleet_delete.status_code == 404
    assert "fleet vehicle" in fleet_delete.json()["detail"]
    assert api.get("/vehicles/1/features").status_code == 200


def test_sse_resumes_after_last_event_id(api: httpx.Client, stack: Stack) -> None:
    with Listener(stack.url, "/vehicles/events") as events:
        first = api.post("/vehicles", json=VEHICLE).json()["vehicle_id"]
        seen, _ = events.wait_for(lambda p: p["vehicle_id"] == first)
    assert seen.id
    # Disconnected: these happen while no client listens.
    missed = [api.post("/vehicles", json=VEHICLE).json()["vehicle_id"] for _ in range(3)]
    with Listener(stack.url, "/vehicles/events", last_event_id=seen.id) as resumed:
        got = [
            resumed.wait_for(lambda p: p["vehicle_id"] in missed)[1]["vehicle_id"] for _ in missed
        ]
    assert sorted(got) == sorted(missed)
    bad = api.get("/vehicles/events", headers={"Last-Event-ID": "not-an-id"})
    assert bad.status_code == 422
    assert "Last-Event-ID" in bad.text


def test_sse_sends_keep_alive_comments(stack: Stack) -> None:
    comments = 0
    with (
        httpx.Client(base_url=stack.url, timeout=10) as client,
        client.stream("GET", "/pipelines/events") as response,
    ):
        for line in response.iter_lines():
            if line.startswith(":"):
                comments += 1
            if comments == 2:
                break
    assert comments == 2


def test_events_send_health_on_connect(stack: Stack) -> None:
    with Listener(stack.url, "/events") as events:
        _event, payload = events.wait_for(lambda _payload: True, timeout_s=10)
    assert payload == {
        "type": "health-changed",
        "status": "ok",
        "model_version": stack.champion_version,
    }


def _traffic(url: str, stop: threading.Event, outcomes: Counter[str], versions: set[str]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                response = client.post("/predict", json=VEHICLE)
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                continue
            outcomes[str(response.status_code)] += 1
            if response.status_code == 200:
                versions.add(response.json()["model_version"])


def weaken_champion_procedure(settings: Settings) -> None:
    """Make the champion beatable where a promotion looks: its logged sklearn model,
    which the promotion refits on today's data, becomes a median predictor on the same
    features. What serves (its ONNX graph) is untouched."""
    client = MlflowClient(settings.mlflow_uri)
    champion = client.get_model_version_by_alias(settings.model_name, ALIAS_CHAMPION)
    uri = client.get_model_version_download_uri(settings.model_name, str(champion.version))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=client.tracking_uri)
        )
        model = mlflow.sklearn.load_model(str(local))
        columns = pd.DataFrame([[0.0] * len(model.features)], columns=list(model.features))
        median = DummyRegressor(strategy="median").fit(columns, [0.0])
        (local / "model.pkl").write_bytes(cloudpickle.dumps(median))
        client.log_artifact(str(champion.run_id), str(local / "model.pkl"), MODEL_ARTIFACT_PATH)


def test_train_promotes_and_rolls_out_under_traffic(api: httpx.Client, stack: Stack) -> None:
    """/train runs the pipeline in the background; the new candidate beats a champion
    whose procedure we made worse, so a progressive rollout takes it through shadow and
    canary to champion while four clients keep predicting: no request fails, and
    clients see the new version."""
    settings = stack.settings
    weaken_champion_procedure(settings)
    mlflow = MlflowClient(settings.mlflow_uri)

    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    versions: set[str] = set()
    clients = [
        threading.Thread(target=_traffic, args=(stack.url, stop, outcomes, versions))
        for _ in range(4)
    ]
    with (
        Listener(stack.url, "/pipelines/events") as pipelines,
        Listener(stack.url, "/events") as health,
    ):
        for thread in clients:
            thread.start()
        try:
            triggered = api.post("/train")
            assert triggered.status_code == 200, triggered.text
            run = triggered.json()
            assert run["status"] == "triggered"
            assert run["dag_id"] == DAG_PIPELINE
            second = api.post("/train")
            assert second.status_code == 409
            assert run["dag_run_id"] in second.json()["detail"]

            _e, done = pipelines.wait_for(
                lambda p: p["dag_run_id"] == run["dag_run_id"], timeout_s=600
            )
            assert done == {
                "type": "pipeline-completed",
                "dag_id": DAG_PIPELINE,
                "dag_run_id": run["dag_run_id"],
                "state": "success",
            }
            rollout = api.get("/rollout").json()
            assert rollout["champion_version"] == stack.champion_version
            new_version = rollout["candidate_version"]
            assert new_version != stack.champion_version
            deadline = time.monotonic() + 120
            while rollout["state"] != "promoted" and time.monotonic() < deadline:
                assert rollout["state"] != "rolled_back", rollout
                time.sleep(0.2)
                rollout = api.get("/rollout").json()
            assert rollout["state"] == "promoted", {
                key: rollout.get(key) for key in ("state", "step", "status", "reason", "signals")
            }
            assert mlflow.get_model_version_by_alias(
                settings.model_name, ALIAS_CHAMPION
            ).version == str(new_version)
            _e, changed = health.wait_for(
                lambda p: p["model_version"] == str(new_version), timeout_s=120
            )
            assert changed["status"] == "ok"
            time.sleep(1.0)  # traffic after the swap
        finally:
            stop.set()
            for thread in clients:
                thread.join(15)
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 100
    assert str(new_version) in versions
    assert api.get("/health").json()["model_version"] == str(new_version)


def test_served_predictions_are_logged_drained_and_joined(api: httpx.Client, stack: Stack) -> None:
    """Through the running stack: the gateway logs what it answered, the materializer
    drains it to Parquet, and ``join_outcomes`` labels the predictions by id."""
    tag = f"log-{time.time_ns()}"
    answers = {}
    for n, (path, body) in enumerate(
        [
            ("/predict/id", {"vehicle_id": 1}),
            ("/predict", VEHICLE),
            ("/predict/batch", [VEHICLE, {**VEHICLE, "num_images": 9}]),
        ]
    ):
        response = api.post(
            f"{path}?interval_level=0.9", json=body, headers={"X-Request-ID": f"{tag}-{n}"}
        )
        assert response.status_code == 200, response.text
        answers[f"{tag}-{n}"] = response.json()

    root = stack.settings.prediction_log_path

    def logged() -> pd.DataFrame:
        frame = read_log(root)
        return frame[frame["request_id"].fillna("").str.startswith(tag)]

    deadline = time.monotonic() + 60  # the drain writes every 10 s by default
    while len(logged()) < 4 and time.monotonic() < deadline:
        time.sleep(1)
    frame = logged().set_index(["request_id", "row"])
    assert len(frame) == 4, "the drain wrote the logged requests"

    by_id = frame.loc[(f"{tag}-0", 0)]
    assert by_id["route"] == "/predict/id"
    assert by_id["vehicle_id"] == 1
    assert by_id["model_version"] == answers[f"{tag}-0"]["model_version"]
    assert by_id["predicted_reservations"] == pytest.approx(
        answers[f"{tag}-0"]["predicted_reservations"], abs=0.006
    )
    interval = answers[f"{tag}-0"]["prediction_interval"]
    assert by_id["interval_level"] == 0.9 == interval["level"]
    assert by_id["interval_lower"] == pytest.approx(interval["lower"], abs=0.006)
    assert by_id["role"] == "champion"
    assert by_id["latency_ms"] > 0
    batch = answers[f"{tag}-2"]["predictions"]
    for row, answer in enumerate(batch):
        logged_row = frame.loc[(f"{tag}-2", row)]
        assert logged_row["predicted_reservations"] == pytest.approx(
            answer["predicted_reservations"], abs=0.006
        )
        assert pd.isna(logged_row["vehicle_id"])
    assert frame.loc[(f"{tag}-2", 1), "num_images"] == 9

    summary = join_outcomes(stack.settings)
    outcomes = pd.read_parquet(summary.path)
    mine = outcomes[outcomes["request_id"] == f"{tag}-0"]
    assert len(mine) == 1
    assert mine["num_reservations"].notna().all()  # vehicle 1 is a fleet vehicle
