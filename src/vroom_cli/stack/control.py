"""Start, stop and inspect the local stack: the plain Python API behind ``vroom up/down/status``.

Used by the CLI and by the test fixtures alike. Every function takes the ``StackSettings``
whose state directory, host and ports define the stack; nothing reads the environment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import time
import xmlrpc.client
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog

from vroom_cli.stack import watchdog
from vroom_cli.stack.errors import PortInUse, ServiceFailedToStart
from vroom_cli.stack.services import SERVICES, ServiceSpec, log_dir, select
from vroom_cli.stack.settings import StackSettings
from vroom_cli.stack.supervisor import ProcessInfo, Supervisor, log_size, pid_alive, tail
from vroom_common.errors import VroomError

log = structlog.get_logger(__name__)

#: Seconds to wait for supervisord itself to start or to exit.
SUPERVISOR_TIMEOUT = 30.0
_POLL = 0.25
#: supervisord states in which a process is on its way up (or being brought back).
_IN_FLIGHT = frozenset({"STARTING", "BACKOFF", "RUNNING"})


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``status`` sees it."""

    name: str
    #: supervisord's state in lower case (running, starting, backoff, stopped, exited,
    #: fatal, ...); ``stopped`` when supervisord itself is not running.
    state: str
    pid: int | None
    ports: tuple[int, ...]
    healthy: bool
    url: str
    #: Why the health check failed ('' when healthy or not running).
    detail: str = ""
    #: Times it was started again after dying, since supervisord started.
    restarts: int = 0
    #: How it last died ("exit status 3", "terminated by SIGKILL"; '' if never).
    last_exit: str = ""

    @property
    def port(self) -> int | None:
        """The main port; ``None`` for a service that listens on none (the materializer)."""
        return self.ports[0] if self.ports else None


@dataclass(frozen=True)
class StackStatus:
    """The services of the stack, and what the call that produced this changed."""

    services: tuple[ServiceStatus, ...]
    supervisor_running: bool
    #: Services ``up`` had to start or wait for (empty: everything already ran healthy).
    started: tuple[str, ...] = ()
    #: Services ``down`` stopped.
    stopped: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return bool(self.services) and all(service.healthy for service in self.services)

    def service(self, name: str) -> ServiceStatus:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


def check_health(spec: ServiceSpec, settings: StackSettings) -> tuple[bool, str]:
    """Run the service's health check: ``(healthy, why not)``."""
    try:
        spec.health(settings)
    except Exception as exc:  # any failure of the probe means "not healthy"
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def port_in_use(host: str, port: int) -> bool:
    """Whether some socket already holds ``host:port`` (listening or just bound).

    Binds with SO_REUSEADDR like the servers themselves do, so connections of a
    just-stopped server lingering in TIME_WAIT do not count as "in use".
    """
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return False  # the server will report the bad host itself
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def _check_ports(settings: StackSettings, specs: Iterable[ServiceSpec]) -> None:
    for spec in specs:
        for field_name, port in zip(spec.port_fields, spec.ports(settings), strict=True):
            if port_in_use(settings.host, port):
                raise PortInUse(spec.name, port, StackSettings.env_name(field_name))


def _programs(
    settings: StackSettings, wanted: Sequence[ServiceSpec]
) -> list[tuple[ServiceSpec, list[str]]]:
    """Command lines of every registered service for the supervisor config.

    The services asked for must resolve (a missing binary is an error); the others are
    configured when they can be, so ``status``/``down`` still know them.
    """
    wanted_names = {spec.name for spec in wanted}
    programs = []
    for spec in SERVICES:
        try:
            programs.append((spec, spec.command(settings)))
        except VroomError:
            if spec.name in wanted_names:
                raise
            log.debug("service not configured", service=spec.name, exc_info=True)
    return programs


def _failure(
    supervisor: Supervisor,
    spec: ServiceSpec,
    settings: StackSettings,
    reason: str,
    log_from: int = 0,
) -> ServiceFailedToStart:
    """Stop the service (no endless crash loop) and describe why it failed.

    The log tail shows what was written since ``log_from`` (this start), when anything was.
    """
    with contextlib.suppress(Exception):
        supervisor.stop_process(spec.name)
    return ServiceFailedToStart(spec.name, reason, tail(spec.log_path(settings), since=log_from))


def _wait_healthy(
    supervisor: Supervisor,
    spec: ServiceSpec,
    settings: StackSettings,
    timeout: float,
    log_from: int,
) -> None:
    """Wait until supervisord reports RUNNING and the health check passes.

    Fails fast when the process exits or is respawned while we wait: a server that dies
    during startup will not become healthy by waiting longer.
    """
    deadline = time.monotonic() + timeout
    first_start: int | None = None
    detail = "not running yet"
    while True:
        info = supervisor.process_info(spec.name)
        if info is None:
            raise _failure(supervisor, spec, settings, "is not configured in supervisord")
        if info.state == "FATAL":
            why = info.spawnerr or info.description or "too many failed starts"
            reason = f"could not be started ({why})"
            raise _failure(supervisor, spec, settings, reason, log_from)
        if first_start is None and info.state in _IN_FLIGHT:
            first_start = info.start
        respawned = first_start is not None and info.start != first_start
        if info.state in {"EXITED", "STOPPED"} or respawned:
            why = info.spawnerr or (
                f"exit status {info.exitstatus}"
                if info.state in {"EXITED", "BACKOFF"}
                else "supervisord had to restart it"
            )
            raise _failure(supervisor, spec, settings, f"exited while starting ({why})", log_from)
        if info.state == "RUNNING":
            healthy, detail = check_health(spec, settings)
            if healthy:
                return
        if time.monotonic() > deadline:
            reason = (
                f"not healthy after {timeout:.0f}s (state {info.state.lower()}; "
                f"last check: {detail})"
            )
            raise _failure(supervisor, spec, settings, reason, log_from)
        time.sleep(_POLL)


def _ensure_running(
    supervisor: Supervisor, spec: ServiceSpec, settings: StackSettings, timeout: float | None
) -> bool:
    """Bring one service up; ``True`` when it was not already running and healthy."""
    wait = spec.startup_timeout if timeout is None else timeout
    info = supervisor.process_info(spec.name)
    state = info.state if info else "UNKNOWN"
    log_from = log_size(spec.log_path(settings))
    if state == "RUNNING" and check_health(spec, settings)[0]:
        log.info("service already running", service=spec.name, pid=info.pid if info else None)
        return False
    if state == "STOPPING":
        supervisor.stop_process(spec.name)  # waits for the stop under way
        state = "STOPPED"
    if state not in _IN_FLIGHT:
        # Stopped, exited or fatal: (re)start it, unless a stranger holds its port.
        _check_ports(settings, [spec])
        log.info("starting service", service=spec.name, state=state.lower())
        try:
            supervisor.start_process(spec.name)
        except xmlrpc.client.Fault as fault:  # it died at once, or cannot be executed
            reason = f"could not be started ({fault.faultString})"
            raise _failure(supervisor, spec, settings, reason, log_from) from None
    else:
        log.info("waiting for service", service=spec.name, state=state.lower())
    _wait_healthy(supervisor, spec, settings, wait, log_from)
    log.info("service healthy", service=spec.name, url=spec.url(settings))
    return True


def _service_status(
    spec: ServiceSpec,
    settings: StackSettings,
    info: ProcessInfo | None,
    record: watchdog.ServiceRecord | None = None,
) -> ServiceStatus:
    state = info.state.lower() if info else "stopped"
    healthy, detail = check_health(spec, settings) if state == "running" else (False, "")
    return ServiceStatus(
        name=spec.name,
        state=state,
        pid=info.pid if info and state == "running" else None,
        ports=spec.ports(settings),
        healthy=healthy,
        url=spec.url(settings),
        detail=detail,
        restarts=record.restarts if record else 0,
        last_exit=record.last_exit if record else "",
    )


def status(settings: StackSettings, services: Iterable[str] | None = None) -> StackStatus:
    """Report state, pid, ports, health and URL of the services (all when ``None``)."""
    specs = select(services)
    supervisor = Supervisor(settings)
    running = supervisor.is_running()
    infos = supervisor.all_process_info() if running else {}
    book = supervisor.restart_book() if running else {}
    return StackStatus(
        services=tuple(
            _service_status(spec, settings, infos.get(spec.name), book.get(spec.name))
            for spec in specs
        ),
        supervisor_running=running,
    )


def up(
    settings: StackSettings, services: Iterable[str] | None = None, timeout: float | None = None
) -> StackStatus:
    """Start supervisord if needed, then each service (all when ``None``) in order.

    Idempotent: services already running and healthy are left alone, crashed ones are
    restarted. Each start waits for the service's health check, up to ``timeout``
    seconds (default: the service's own ``startup_timeout``).

    Raises:
        PortInUse: a port of a service to start is held by another process.
        ServiceFailedToStart: a service exited or stayed unhealthy; has its log tail.
        DependencyUnavailable: a program (e.g. redis-server) is not installed, or
            supervisord could not be started.
    """
    specs = select(services)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_dir(settings).mkdir(parents=True, exist_ok=True)
    for spec in specs:
        spec.data_dir(settings).mkdir(parents=True, exist_ok=True)
    programs = _programs(settings, specs)
    supervisor = Supervisor(settings)
    if supervisor.is_running():
        supervisor.apply(programs)
    else:
        _check_ports(settings, specs)  # nothing of ours runs: fail before starting anything
        log.info("starting supervisord", config=str(supervisor.paths.config))
        supervisor.launch(programs, SUPERVISOR_TIMEOUT)
    started = [spec.name for spec in specs if _ensure_running(supervisor, spec, settings, timeout)]
    if not started:
        log.info("nothing to start: every service already runs healthy")
    current = status(settings, [spec.name for spec in specs])
    return StackStatus(
        services=current.services,
        supervisor_running=current.supervisor_running,
        started=tuple(started),
    )


def down(settings: StackSettings, timeout: float = SUPERVISOR_TIMEOUT) -> StackStatus:
    """Stop every service (reverse start order) and supervisord; a no-op when none runs."""
    supervisor = Supervisor(settings)
    stopped: list[str] = []
    if supervisor.is_running():
        try:
            infos = supervisor.all_process_info()
            known = [spec.name for spec in reversed(SERVICES)]
            order = [n for n in infos if n not in known] + [n for n in known if n in infos]
            for name in order:
                if infos[name].state in _IN_FLIGHT and name != watchdog.NAME:
                    log.info("stopping service", service=name)
                    stopped.append(name)
                supervisor.stop_process(name)
            log.info("stopping supervisord")
            supervisor.shutdown(timeout)
        except BaseException:
            # Whatever went wrong (even Ctrl-C), leave no server behind: supervisord
            # stops its children when it gets SIGTERM.
            pid = supervisor.pid()
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
            raise
    current = status(settings)
    return StackStatus(
        services=current.services,
        supervisor_running=current.supervisor_running,
        stopped=tuple(stopped),
    )
