"""Shared fixtures: real Redis and MLflow servers, started once per session by the stack API.

``stack_settings`` runs ``vroom_cli.stack.up`` (supervisord + redis + mlflow) in a
temporary state directory on free ports, so tests never touch a developer's ``.vroom/``
or default ports. MLflow state is shared by the whole session: tests use unique
experiment and model names instead of cleaning it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from vroom_cli.stack import StackStatus, down, up
from vroom_common.errors import VroomError
from vroom_common.settings import Settings

#: The services the session stack runs.
STACK_SERVICES = ("redis", "mlflow")

MakeStackSettings = Callable[[Path], Settings]


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free right now (held together so they are distinct)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def make_stack_settings() -> MakeStackSettings:
    """Build ``Settings`` for a private stack: the given state dir, loopback, free ports."""

    def make(state_dir: Path) -> Settings:
        redis_port, mlflow_port = free_ports(2)
        return Settings(
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


def start_stack(settings: Settings, services: tuple[str, ...] = STACK_SERVICES) -> StackStatus:
    """``up`` or fail the test with the reason (and the service's log tail)."""
    try:
        return up(settings, services=services)
    except VroomError as error:
        down(settings)
        pytest.fail(f"could not start the test stack: {error.message}", pytrace=False)


@pytest.fixture(scope="session")
def stack_settings(
    tmp_path_factory: pytest.TempPathFactory, make_stack_settings: MakeStackSettings
) -> Iterator[Settings]:
    """Settings of a running Redis + MLflow (tracking URI ``settings.mlflow_uri``)."""
    settings = make_stack_settings(tmp_path_factory.mktemp("stack"))
    start_stack(settings)
    yield settings
    down(settings)


@pytest.fixture
def redis_client(stack_settings: Settings) -> Iterator[redis.Redis]:
    """A client of the session's Redis, on an empty database (bytes responses)."""
    client = redis.Redis.from_url(stack_settings.redis_url)
    client.flushdb()
    yield client
    client.close()
