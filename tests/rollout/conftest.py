"""Fixtures for rollout tests: a fake Kubernetes API server and a fake predictor."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import typer
from click.testing import Result
from kubernetes import client
from typer.testing import CliRunner

from tests.rollout.fake_kube import FakeKube, inference_service, serve
from vroom_pipelines.cli import register
from vroom_pipelines.settings import get_pipeline_settings
from vroom_rollout.champion import ChampionRef
from vroom_rollout.kubernetes import KubernetesRollout
from vroom_rollout.progressive.store import RolloutStore
from vroom_rollout.settings import RolloutSettings

NAMESPACE = "serving"
ISVC_NAME = "vroom-forecast"
OLD_URI = "s3://models/mlartifacts/1/old-run/artifacts/model"
NEW_URI = "s3://models/mlartifacts/1/new-run/artifacts/model"

#: The champion the Kubernetes tests roll out (no MLflow needed).
CHAMPION = ChampionRef(
    model_name="vroom-forecast",
    version="7",
    run_id="new-run",
    source_uri="mlflow-artifacts:/1/new-run/artifacts/model",
    storage_uri=NEW_URI,
)

MakeFakeKube = Callable[..., FakeKube]


@pytest.fixture
def make_fake_kube() -> Iterator[MakeFakeKube]:
    """Start a fake API server holding one InferenceService (``None``: it does not exist)."""
    with ExitStack() as stack:

        def make(
            storage_uri: str | None = OLD_URI,
            annotations: dict[str, str] | None = None,
            **options: Any,
        ) -> FakeKube:
            isvc = (
                inference_service(NAMESPACE, ISVC_NAME, storage_uri, annotations)
                if storage_uri is not None
                else None
            )
            return stack.enter_context(serve(FakeKube(NAMESPACE, ISVC_NAME, isvc, **options)))

        yield make


@pytest.fixture
def kube_settings() -> RolloutSettings:
    return RolloutSettings(
        rollout_backend="kubernetes",
        kube_namespace=NAMESPACE,
        inference_service_name=ISVC_NAME,
        rollout_timeout_s=5,
    )


def api_client_for(fake: FakeKube) -> client.ApiClient:
    """A real ``kubernetes`` client pointed at the fake server."""
    return client.ApiClient(client.Configuration(host=fake.url))


def kube_rollout(
    fake: FakeKube, settings: RolloutSettings, champion: ChampionRef = CHAMPION
) -> KubernetesRollout:
    return KubernetesRollout(
        settings,
        api_client_for(fake),
        resolve=lambda _settings: champion,
        poll_interval_s=0.01,
    )


@dataclass
class FakePredictor:
    """Answers the repository-extension load and v2 metadata like the KServe server."""

    model_name: str
    versions: list[str] = field(default_factory=lambda: ["3", "4"])
    """Served version before the load, and after it."""
    load_status: int = 200
    load_body: Any = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    _loaded: bool = False

    def follow(self) -> None:
        """Swap to the second version by itself, as the predictor's promotion watcher does."""
        self._loaded = True

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        self.requests.append((method, path))
        if method == "POST" and path == f"/v2/repository/models/{self.model_name}/load":
            if self.load_status == 200:
                self._loaded = True
            body = self.load_body or {"name": self.model_name, "load": True}
            return self.load_status, body
        if method == "GET" and path == f"/v2/models/{self.model_name}":
            version = self.versions[1 if self._loaded else 0]
            return 200, {"name": self.model_name, "versions": [version], "platform": "onnx"}
        return 404, {"error": f"Model with name {path.rsplit('/', 2)[-2]} does not exist."}


@pytest.fixture
def make_fake_predictor() -> Iterator[Callable[..., FakePredictor]]:
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def make(model_name: str, **options: Any) -> FakePredictor:
        fake = FakePredictor(model_name, **options)

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, body = fake.answer(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        fake.url = f"http://127.0.0.1:{server.server_address[1]}"
        return fake

    yield make
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- progressive rollouts on a real Redis -----------------------------------------------


@pytest.fixture
def settings(isolated_settings: RolloutSettings) -> RolloutSettings:
    return isolated_settings.with_overrides(
        rollout_steps=[10, 50],
        rollout_shadow_s=10,
        rollout_step_s=10,
        rollout_min_requests=20,
        rollout_max_error_rate=0.05,
        rollout_lease_ttl_s=1.0,
        rollout_tick_s=0.02,
    )


@pytest.fixture
def store(settings: RolloutSettings, redis_client: redis.Redis) -> RolloutStore:
    return RolloutStore(redis_client, settings.model_name)


# --- the vroom CLI -------------------------------------------------------------------------

Invoke = Callable[..., Result]


@pytest.fixture
def cli(isolated_settings: RolloutSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """``vroom <args>`` with the environment of ``isolated_settings`` (plus ``env``)."""
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def invoke(*args: str, **env: str) -> Result:
        base = {
            "VROOM_REDIS_URL": isolated_settings.redis_url,
            "VROOM_MLFLOW_URI": isolated_settings.mlflow_uri,
            "VROOM_MODEL_NAME": isolated_settings.model_name,
            "VROOM_MLFLOW_EXPERIMENT": isolated_settings.mlflow_experiment,
        }
        for key, value in {**base, **env}.items():
            monkeypatch.setenv(key, value)
        get_pipeline_settings.cache_clear()
        return runner.invoke(app, [*args, "--state-dir", str(isolated_settings.state_dir)])

    yield invoke
    get_pipeline_settings.cache_clear()
