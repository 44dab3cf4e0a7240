"""The whole local stack, started the way ``vroom run`` starts it, on free ports.

One stack for the package: Redis, MLflow, the predictor, the feature service, the
materializer and the gateway under supervisord, in a temporary state directory, with
a champion trained on the real data set when it is present (a synthetic fleet
otherwise). The vehicle database is PostgreSQL, as on a cluster (the gateway's own
suite and the pipelines' run on SQLite, the local default). Tests talk to the gateway
over HTTP only.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.conftest import free_ports
from tests.ports import private_stack_settings
from tests.postgres import PostgresServer
from tests.realdata import REAL_DATA_DIR
from vroom_cli.run import ensure_champion, gateway_url
from vroom_cli.stack import down
from vroom_cli.stack.settings import StackSettings
from vroom_common.errors import VroomError
from vroom_gateway.settings import DEFAULT_CORS_ORIGINS

pytestmark = pytest.mark.integration


#: The stack's API key: mutations need it (``api`` and ``Stack.client`` send it).
API_KEY = "e2e-" + "k" * 28
#: Where the browser tests' dashboard page is served: the local dashboard's default
#: origin when its port is free, else a free port (then allowed by CORS explicitly).
DASHBOARD_HOST = "127.0.0.1"


def _dashboard_port() -> int:
    with socket.socket() as probe:
        try:
            probe.bind((DASHBOARD_HOST, 3000))
        except OSError:
            return free_ports(1)[0]
    return 3000


@dataclass(frozen=True)
class Stack:
    settings: StackSettings
    url: str
    champion_version: str
    real_data: bool

    @property
    def api_key(self) -> str:
        return API_KEY

    @property
    def dashboard_origin(self) -> str:
        return self.settings.cors_origins[-1]

    def client(self, timeout: float = 30.0, *, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)


def stack_settings(state_dir: Path, database_url: str) -> StackSettings:
    dashboard = f"http://{DASHBOARD_HOST}:{_dashboard_port()}"
    origins = list(DEFAULT_CORS_ORIGINS)
    return private_stack_settings(
        state_dir,
        database_url=database_url,
        benchmark_budget_s=2.0,  # the fuzzer may ask for 100,000 iterations
        sse_keepalive_s=1.0,
        # Rollouts decided in seconds, on enough requests for a stable p99 under load.
        rollout_steps=[10, 50],
        rollout_shadow_s=2.0,
        rollout_step_s=3.0,
        rollout_min_requests=100,
        rollout_p99_slack_ms=20.0,
        rollout_lease_ttl_s=2.0,
        # Keys on, as a secured deployment runs; the limits stay out of the tests' way
        # (tests/gateway/test_security.py hits them on purpose).
        api_keys=[API_KEY],
        rate_limit_costly="1000/minute",
        rate_limit_benchmark="1000/minute",
        cors_origins=origins if dashboard in origins else [*origins, dashboard],
    )


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Stack]:
    with postgres.database() as database_url:
        state_dir = tmp_path_factory.mktemp("e2e") / "state"
        yield from _run_stack(stack_settings(state_dir, database_url))


def _run_stack(settings: StackSettings) -> Iterator[Stack]:
    real_data = (REAL_DATA_DIR / "vehicles.csv").is_file()
    try:
        version = ensure_champion(settings, REAL_DATA_DIR if real_data else None)
    except VroomError as error:
        down(settings)
        pytest.fail(f"could not start the stack: {error.message}", pytrace=False)
    try:
        yield Stack(settings, gateway_url(settings), version, real_data)
    finally:
        down(settings)


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client


class Listener:
    """An SSE connection read by a background thread. ``__enter__`` returns once the
    response headers arrived (the server has pinned the stream cursor by then), so what
    happens afterwards is received."""

    def __init__(self, url: str, path: str, last_event_id: str | None = None) -> None:
        self.url, self.path = url, path
        self.headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.events: queue.Queue[ServerSentEvent] = queue.Queue()
        self.comments = 0
        self._connected = threading.Event()
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with connect_sse(self._client, "GET", self.path, headers=self.headers) as source:
                source.response.raise_for_status()
                self._connected.set()
                for event in source.iter_sse():
                    if event.data:  # keep-alives are comments, not messages
                        self.events.put(event)
        except BaseException as exc:
            self.error = exc
            self._connected.set()

    def __enter__(self) -> Listener:
        self._thread.start()
        if not self._connected.wait(30) or self.error is not None:
            raise AssertionError(f"could not connect to {self.path}: {self.error!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()
        self._thread.join(5)

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
    ) -> tuple[ServerSentEvent, dict[str, Any]]:
        """The next message whose JSON payload matches (earlier ones are dropped)."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            payload = json.loads(event.data)
            if match(payload):
                return event, payload
        raise AssertionError(f"no matching event on {self.path} within {timeout_s:g} s")
