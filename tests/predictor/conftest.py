"""A real predictor process (``python -m vroom_predictor`` under the stack's supervisord)
serving a registered model of its own, against the session's Redis and MLflow."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tests.conftest import free_ports, start_stack
from vroom_cli.stack import down
from vroom_common.settings import Settings
from vroom_pipelines.promote import promote
from vroom_pipelines.train import register
from vroom_registry import ModelRegistry


@dataclass
class Served:
    """A running predictor and the registry entry it serves."""

    settings: Settings
    model_dir: Path  # a local copy of the session champion's model directory
    score: float = 4.0  # each new version registers a better score, so it is promoted

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.settings.predictor_http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.settings.predictor_grpc_port}"

    def register_version(self, model_dir: Path | None = None) -> str:
        """A new version of the served model — its run logs ``model_dir`` (default: the
        champion's model) — with a better cv_mae_mean than the last, aliased ``candidate``."""
        client = MlflowClient(self.settings.mlflow_uri)
        name = self.settings.mlflow_experiment
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        run = client.create_run(experiment_id)
        self.score -= 0.01
        metric = Metric("cv_mae_mean", self.score, int(time.time() * 1000), 0)
        client.log_batch(run.info.run_id, metrics=[metric])
        client.log_artifacts(run.info.run_id, str(model_dir or self.model_dir), "model")
        client.set_terminated(run.info.run_id)
        source = f"{run.info.artifact_uri}/model"
        return register(
            ModelRegistry(self.settings.mlflow_uri, self.settings.model_name),
            run.info.run_id,
            source,
        )

    def promote_new_version(self, model_dir: Path | None = None) -> str:
        """Register and promote (forced: the copies are the same model, which a
        comparison would retain); the promotion publishes ``model-promoted``."""
        version = self.register_version(model_dir)
        result = promote(self.settings, force=True)
        assert result.outcome == "promoted", result
        return version

    def wait_version(self, version: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            meta = httpx.get(f"{self.rest}/v2/models/{self.settings.model_name}", timeout=5)
            if meta.status_code == 200 and meta.json().get("versions") == [version]:
                return
            time.sleep(0.2)
        pytest.fail(f"predictor did not serve version {version} within {timeout}s")


def start_predictor(settings: Settings) -> None:
    start_stack(settings, ("predictor",))


def predictor_settings(stack_settings: Settings, state_dir: Path) -> Settings:
    """The session's Redis/MLflow, a fresh model name, free predictor ports."""
    http_port, grpc_port = free_ports(2)
    name = f"vroom-test-pred-{uuid.uuid4().hex[:8]}"
    return stack_settings.with_overrides(
        state_dir=state_dir,
        model_name=name,
        mlflow_experiment=name,
        predictor_http_port=http_port,
        predictor_grpc_port=grpc_port,
    )


@pytest.fixture(scope="module")
def served(
    champion_model_dir: Path,
    stack_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A predictor serving version 1 (a copy of the session champion) of its own model."""
    model_dir = champion_model_dir
    settings = predictor_settings(stack_settings, tmp_path_factory.mktemp("predictor"))
    served = Served(settings, model_dir)
    version = served.promote_new_version()
    start_predictor(settings)
    served.wait_version(version)
    yield served
    down(settings)
