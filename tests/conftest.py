"""Shared fixtures: real Redis and MLflow servers, started once per session by the stack API.

``stack_settings`` runs ``vroom_cli.stack.up`` (supervisord + redis + mlflow) in a
temporary state directory on free ports, so tests never touch a developer's ``.vroom/``
or default ports. MLflow state is shared by the whole session: tests use unique
experiment and model names instead of cleaning it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import redis
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tests.ports import free_ports
from tests.postgres import PostgresServer, postgres_server
from tests.realdata import REAL_DATA_DIR
from vroom_cli.stack import StackStatus, down, up
from vroom_cli.stack.settings import StackSettings
from vroom_common import events
from vroom_common.errors import VroomError
from vroom_common.events import PipelineCompleted, Stream
from vroom_features.contract import REGISTRATION_FILE
from vroom_pipelines.pipeline import PipelineSummary, run_pipeline
from vroom_registry import ModelRegistry

#: The services the session stack runs.
STACK_SERVICES = ("redis", "mlflow")

MakeStackSettings = Callable[[Path], StackSettings]


@pytest.fixture(scope="session")
def make_stack_settings() -> MakeStackSettings:
    """Build ``StackSettings`` for a private stack: the given state dir, loopback, free ports."""

    def make(state_dir: Path) -> StackSettings:
        redis_port, mlflow_port = free_ports(2)
        return StackSettings(
            state_dir=state_dir,
            host="127.0.0.1",
            redis_port=redis_port,
            mlflow_port=mlflow_port,
            # Explicit, so a VROOM_REDIS_URL / VROOM_MLFLOW_URI in the environment cannot
            # point the tests at another server.
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            mlflow_uri=f"http://127.0.0.1:{mlflow_port}",
        )

    return make


def start_stack(settings: StackSettings, services: tuple[str, ...] = STACK_SERVICES) -> StackStatus:
    """``up`` or fail the test with the reason (and the service's log tail)."""
    try:
        return up(settings, services=services)
    except VroomError as error:
        down(settings)
        pytest.fail(f"could not start the test stack: {error.message}", pytrace=False)


@pytest.fixture(scope="session")
def stack_settings(
    tmp_path_factory: pytest.TempPathFactory, make_stack_settings: MakeStackSettings
) -> Iterator[StackSettings]:
    """Settings of a running Redis + MLflow (tracking URI ``settings.mlflow_uri``)."""
    settings = make_stack_settings(tmp_path_factory.mktemp("stack"))
    start_stack(settings)
    yield settings
    down(settings)


@pytest.fixture
def isolated_settings(stack_settings: StackSettings, tmp_path: Path) -> StackSettings:
    """The shared servers, with this test's own state dir, model name and experiment.

    Tests share one Redis and one MLflow; a unique registered model name keeps their
    champions apart, and ``flushdb`` (``redis_client``) keeps their streams apart.
    """
    name = f"vroom-test-{uuid.uuid4().hex[:8]}"
    return stack_settings.with_overrides(
        state_dir=tmp_path / "state", model_name=name, mlflow_experiment=name
    )


@pytest.fixture
def redis_client(stack_settings: StackSettings) -> Iterator[redis.Redis]:
    """A client of the session's Redis, on an empty database (bytes responses)."""
    client = redis.Redis.from_url(stack_settings.redis_url)
    client.flushdb()
    yield client
    client.close()


#: Redis database of the session champion's stores (0 is flushed per test; the feature
#: service and gateway tests use 5 and 7).
CHAMPION_REDIS_DB = 3


class Champion(NamedTuple):
    """A pipeline run and the ``pipeline-completed`` events it published."""

    settings: StackSettings
    summary: PipelineSummary
    completed: list[PipelineCompleted]
    real_data: bool


@pytest.fixture(scope="session")
def champion(stack_settings: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> Champion:
    """One full pipeline run shared by the session: the real data when present, else a
    synthetic fleet. Its registered model (``vroom-test-champion``) has a champion."""
    host, port = stack_settings.redis_host_port
    settings = stack_settings.with_overrides(
        state_dir=tmp_path_factory.mktemp("champion") / "state",
        model_name="vroom-test-champion",
        mlflow_experiment="vroom-test-champion",
        # A Redis database of its own: other tests flush database 0 (``redis_client``),
        # and this run's online store must outlive them.
        redis_url=f"redis://{host}:{port}/{CHAMPION_REDIS_DB}",
    )
    real_data = (REAL_DATA_DIR / "vehicles.csv").is_file()
    client = redis.Redis.from_url(settings.redis_url)
    before = client.xrange(Stream.PIPELINES)
    summary = run_pipeline(settings, data_dir=REAL_DATA_DIR if real_data else None)
    emitted = [
        event
        for _id, fields in client.xrange(Stream.PIPELINES)[len(before) :]
        if isinstance(event := events.decode(fields), PipelineCompleted)
    ]
    client.close()
    return Champion(settings, summary, emitted, real_data)


@pytest.fixture(scope="session")
def champion_model_dir(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local copy of the session champion's model directory (downloaded once), without
    its registration file: each test registers copies of it as versions of its own."""
    settings = champion.settings
    models = ModelRegistry(settings.mlflow_uri, settings.model_name)
    version = models.version(champion.summary.train.model_version)
    model_dir = models.download(version, tmp_path_factory.mktemp("champion-model"))
    (model_dir / REGISTRATION_FILE).unlink(missing_ok=True)  # versions differ per copy
    return model_dir


def register_model_dir(settings: StackSettings, model_dir: Path, score: float) -> str:
    """A new version of ``settings.model_name`` whose run logs ``model_dir`` as its model
    and ``score`` as cv_mae_mean (aliased ``candidate``, like training does)."""
    from vroom_pipelines.train import register  # noqa: PLC0415 - sklearn, MLflow: only when used

    client = MlflowClient(settings.mlflow_uri)
    name = settings.mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id)
    client.log_batch(
        run.info.run_id, metrics=[Metric("cv_mae_mean", score, int(time.time() * 1000), 0)]
    )
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    return register(
        ModelRegistry(settings.mlflow_uri, settings.model_name),
        run.info.run_id,
        f"{run.info.artifact_uri}/model",
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL server (started on first use)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on each backend we support: its SQLAlchemy URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vroom.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    with server.database() as url:
        yield url
