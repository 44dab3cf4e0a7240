"""``/health``, ``/model``, and what the gateway answers when a dependency is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from tests.conftest import Champion
from tests.gateway.conftest import VEHICLE, dead_port
from tests.predictor.conftest import Served, predictor_settings, start_predictor
from vroom_cli.stack import down
from vroom_common.events import ModelLoaded
from vroom_gateway.app import create_app
from vroom_gateway.routes.events import health_changed
from vroom_gateway.settings import GatewaySettings
from vroom_pipelines.train import MODEL_FEATURES
from vroom_registry import ALIAS_CHAMPION

pytestmark = pytest.mark.integration


@pytest.fixture
def predictor_down(served: Served) -> Iterator[TestClient]:
    settings = served.settings.model_copy(
        update={"predictor_grpc_target": f"127.0.0.1:{dead_port()}"}
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def features_down(served: Served) -> Iterator[TestClient]:
    settings = served.settings.model_copy(
        update={"feature_service_url": f"http://127.0.0.1:{dead_port()}"}
    )
    with TestClient(create_app(settings)) as client:
        yield client


def served_version(served: Served) -> str:
    client = MlflowClient(served.settings.mlflow_uri)
    return str(
        client.get_model_version_by_alias(served.settings.model_name, ALIAS_CHAMPION).version
    )


def test_health_ok(client: TestClient, served: Served) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model_name": served.settings.model_name,
        "model_version": served_version(served),
        "mlflow_uri": served.settings.mlflow_uri,
        "feast_online": True,
    }


def test_predictor_down(predictor_down: TestClient) -> None:
    response = predictor_down.post("/predict", json=VEHICLE)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("predictor is unavailable")

    health = predictor_down.get("/health").json()
    assert health["status"] == "loading"
    assert health["model_version"] == ""  # a string, never null (SPEC wire types)
    assert health["feast_online"] is True


def test_feature_service_down(features_down: TestClient) -> None:
    response = features_down.post("/predict", json=VEHICLE)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("feature service is unavailable")
    assert features_down.post("/predict/id", json={"vehicle_id": 1}).status_code == 503

    health = features_down.get("/health").json()
    assert health["status"] == "ok"
    assert health["feast_online"] is False


def test_model_reports_the_champion(champion: Champion) -> None:
    settings = champion.settings
    version = MlflowClient(settings.mlflow_uri).get_model_version_by_alias(
        settings.model_name, ALIAS_CHAMPION
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/model")

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "version",
        "run_id",
        "trained_at",
        "metrics",
        "params",
        "feature_importances",
    }
    assert body["version"] == str(version.version)
    assert body["run_id"] == version.run_id
    assert body["trained_at"]
    assert "cv_mae_mean" in body["metrics"]
    assert set(body["feature_importances"]) == set(MODEL_FEATURES)
    assert sum(body["feature_importances"].values()) == pytest.approx(1.0)


def test_model_without_champion_is_404(stack_settings: GatewaySettings) -> None:
    settings = stack_settings.with_overrides(model_name="vroom-test-never-promoted")
    with TestClient(create_app(settings)) as client:
        response = client.get("/model")
    assert response.status_code == 404
    assert "vroom-test-never-promoted" in response.json()["detail"]


def test_model_with_mlflow_down_is_503(stack_settings: GatewaySettings) -> None:
    settings = stack_settings.with_overrides(mlflow_uri=f"http://127.0.0.1:{dead_port()}")
    with TestClient(create_app(settings)) as client:
        response = client.get("/model")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("mlflow is unavailable")


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/predict", "/predict/batch", "/predict/id", "/model"} <= set(paths)


def test_predictor_without_a_model(
    served: Served, stack_settings: GatewaySettings, tmp_path: Path
) -> None:
    """A predictor that is up but has no champion: /health no_model, /predict 503."""
    settings = predictor_settings(stack_settings, tmp_path / "state").with_overrides(
        feature_service_port=served.settings.feature_service_port
    )
    start_predictor(settings)
    try:
        with TestClient(create_app(settings)) as client:
            health = client.get("/health").json()
            response = client.post("/predict", json=VEHICLE)
    finally:
        down(settings)

    assert health["status"] == "no_model"
    assert health["model_version"] == ""
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"model {settings.model_name!r} is not ready")


def test_only_the_champions_predictor_loading_a_version_changes_the_health() -> None:
    """On a cluster the candidate's predictor publishes ``model-loaded`` under its own
    name; ``/events`` clients must not see the candidate's version as the served one."""
    convert = health_changed("vroom-forecast")
    champion = convert(ModelLoaded(model_name="vroom-forecast", version="8"))
    candidate = convert(ModelLoaded(model_name="vroom-forecast-candidate", version="9"))
    assert champion == {"type": "health-changed", "status": "ok", "model_version": "8"}
    assert candidate is None
