"""The pipeline runners: local processes (real children, real Redis), Kubernetes Jobs
(a fake batch API that checks the exact requests) and Airflow DAG runs (a real local
HTTP server standing in for Airflow's REST API)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from kubernetes import client as kube_client

from tests.conftest import free_ports
from tests.gateway.fake_batch import FakeBatch, cronjob, job, serve
from vroom_common import events
from vroom_common.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from vroom_common.events import DAG_MATERIALIZE, DAG_PIPELINE, PipelineCompleted, Stream
from vroom_gateway.runners import (
    AirflowRunner,
    CommandFactory,
    KubernetesRunner,
    LocalRunner,
    PipelineRunner,
    TriggeredRun,
    job_name,
    label_value,
    make_runner,
    safe_file_name,
)
from vroom_gateway.settings import GatewaySettings
from vroom_pipelines.seed import seed_synthetic

T = TypeVar("T")
RUN_ID = re.compile(r"^manual__\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def standin(code: str) -> CommandFactory:
    """A stand-in child: ``python -c code <dag_id> <run_id>``."""
    return lambda dag_id, run_id: [sys.executable, "-c", code, dag_id, run_id]


SLEEPER = standin("import time; print('started', flush=True); time.sleep(60)")


def completed_events(client: redis.Redis) -> list[PipelineCompleted]:
    parsed = [events.decode(fields) for _id, fields in client.xrange(Stream.PIPELINES)]
    return [e for e in parsed if isinstance(e, PipelineCompleted)]


@pytest.fixture
def offline_settings(tmp_path: Path) -> GatewaySettings:
    """A state dir of its own and a Redis nobody listens on (the runner must cope)."""
    (port,) = free_ports(1)
    return GatewaySettings(state_dir=tmp_path / "state", redis_url=f"redis://127.0.0.1:{port}/0")


async def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


# --- make_runner -------------------------------------------------------------------------


def test_make_runner_picks_the_backend(tmp_path: Path) -> None:
    local = make_runner(GatewaySettings(state_dir=tmp_path))
    kube = make_runner(GatewaySettings(state_dir=tmp_path, pipeline_runner="kubernetes"))
    airflow = make_runner(GatewaySettings(state_dir=tmp_path, airflow_url="http://airflow:8080"))
    assert (local.name, kube.name, airflow.name) == ("local", "kubernetes", "airflow")
    assert isinstance(local, LocalRunner)
    assert isinstance(kube, KubernetesRunner)
    assert isinstance(airflow, AirflowRunner)
    for runner in (local, kube, airflow):
        assert isinstance(runner, PipelineRunner)
        run(runner.aclose())


def test_triggered_run_wire_format() -> None:
    answer = TriggeredRun(dag_id=DAG_PIPELINE, dag_run_id="manual__x")
    assert answer.model_dump() == {
        "status": "triggered",
        "dag_id": "vroom_forecast_pipeline",
        "dag_run_id": "manual__x",
    }


def test_names_for_files_labels_and_jobs() -> None:
    assert (
        safe_file_name("manual__2025-01-02T03:04:05+00:00") == "manual__2025-01-02T03_04_05_00_00"
    )
    assert safe_file_name("../../etc/passwd") == "etc_passwd"
    assert label_value("manual__2025-01-02T03:04:05+00:00") == "manual__2025-01-02T03-04-05-00-00"
    assert label_value("+" + "a" * 80 + "+") == "a" * 62
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        job_name("vroom-forecast-pipeline", now, "ab12")
        == "vroom-forecast-pipeline-20250102030405-ab12"
    )
    long = job_name("My_CronJob." + "x" * 80, now, "ab12")
    assert len(long) == 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", long)


# --- local --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_local_one_run_per_dag_and_dags_in_parallel(offline_settings: GatewaySettings) -> None:
    async def scenario() -> None:
        runner = LocalRunner(offline_settings, command=SLEEPER, stop_grace_s=5)
        try:
            first = await runner.trigger(DAG_MATERIALIZE)
            assert first.dag_id == DAG_MATERIALIZE
            assert RUN_ID.match(first.dag_run_id)
            with pytest.raises(Conflict) as conflict:
                await runner.trigger(DAG_MATERIALIZE)
            assert DAG_MATERIALIZE in conflict.value.message
            assert first.dag_run_id in conflict.value.message
            assert conflict.value.http_status == 409

            other = await runner.trigger(DAG_PIPELINE)  # another DAG may run meanwhile
            materialize_run, pipeline_run = (
                runner.current(DAG_MATERIALIZE),
                runner.current(DAG_PIPELINE),
            )
            assert materialize_run is not None
            assert pipeline_run is not None
            assert materialize_run.process.returncode is None
            assert pipeline_run.process.returncode is None
            assert pipeline_run.run_id == other.dag_run_id
        finally:
            await runner.aclose()
        assert runner.current(DAG_MATERIALIZE) is None
        assert runner.current(DAG_PIPELINE) is None

    run(scenario())


@pytest.mark.timeout(60)
def test_local_concurrent_triggers_start_one_process(offline_settings: GatewaySettings) -> None:
    async def scenario() -> None:
        runner = LocalRunner(offline_settings, command=SLEEPER, stop_grace_s=5)
        try:
            answers = await asyncio.gather(
                *(runner.trigger(DAG_PIPELINE) for _ in range(3)), return_exceptions=True
            )
        finally:
            await runner.aclose()
        started = [a for a in answers if isinstance(a, TriggeredRun)]
        refused = [a for a in answers if isinstance(a, Conflict)]
        assert (len(started), len(refused)) == (1, 2)

    run(scenario())


@pytest.mark.timeout(60)
def test_local_logs_environment_and_rerun(offline_settings: GatewaySettings) -> None:
    code = (
        "import os, sys; print('out', sys.argv[1:], flush=True); "
        "print('err', os.environ['VROOM_DAG_RUN_ID'], os.environ['VROOM_STATE_DIR'], "
        "file=sys.stderr, flush=True)"
    )

    async def scenario() -> None:
        runner = LocalRunner(offline_settings, command=standin(code))
        try:
            first = await runner.trigger(DAG_MATERIALIZE)
            assert await runner.wait(DAG_MATERIALIZE) == 0
            path = (
                offline_settings.state_dir
                / "logs"
                / "pipelines"
                / DAG_MATERIALIZE
                / f"{safe_file_name(first.dag_run_id)}.log"
            )
            text = path.read_text()
            assert f"out ['{DAG_MATERIALIZE}', '{first.dag_run_id}']" in text
            assert f"err {first.dag_run_id} {offline_settings.state_dir}" in text
            # Ended: the same DAG may run again.
            await runner.trigger(DAG_MATERIALIZE)
            assert await runner.wait(DAG_MATERIALIZE) == 0
        finally:
            await runner.aclose()

    run(scenario())


def test_local_default_command_runs_vroom_pipelines(offline_settings: GatewaySettings) -> None:
    runner = LocalRunner(offline_settings)
    argv = list(runner.command(DAG_PIPELINE, "manual__x"))
    assert argv == [
        sys.executable,
        "-m",
        "vroom_pipelines",
        "pipeline",
        "--dag-run-id",
        "manual__x",
    ]
    assert runner.command(DAG_MATERIALIZE, "r")[3] == "materialize"


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case",
    [
        ("killed", "import time; time.sleep(60)", -signal.SIGKILL, "failed"),
        ("crashed at import", "import vroom_no_such_module", 1, "failed"),
        ("exited 0 without reporting", "pass", 0, "success"),
    ],
    ids=lambda case: case[0],
)
def test_local_reports_the_end_when_the_child_did_not(
    isolated_settings: GatewaySettings,
    redis_client: redis.Redis,
    case: tuple[str, str, int, str],
) -> None:
    how, code, returncode, state = case

    async def scenario() -> tuple[TriggeredRun, int | None]:
        runner = LocalRunner(isolated_settings, command=standin(code))
        try:
            triggered = await runner.trigger(DAG_PIPELINE)
            if how == "killed":
                current = runner.current(DAG_PIPELINE)
                assert current is not None
                os.kill(current.pid, signal.SIGKILL)
            return triggered, await runner.wait(DAG_PIPELINE)
        finally:
            await runner.aclose()

    triggered, code_seen = run(scenario())
    assert code_seen == returncode
    assert completed_events(redis_client) == [
        PipelineCompleted(dag_id=DAG_PIPELINE, dag_run_id=triggered.dag_run_id, state=state)  # type: ignore[arg-type]
    ]


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_local_does_not_duplicate_the_childs_event(
    isolated_settings: GatewaySettings, redis_client: redis.Redis
) -> None:
    code = (
        "import os, sys, redis\n"
        "from vroom_common import events\n"
        "client = redis.Redis.from_url(os.environ['VROOM_REDIS_URL'])\n"
        "events.publish(client, events.PipelineCompleted(dag_id=sys.argv[1], "
        "dag_run_id=os.environ['VROOM_DAG_RUN_ID'], state='failed'))\n"
        "sys.exit(1)\n"
    )

    async def scenario() -> TriggeredRun:
        runner = LocalRunner(isolated_settings, command=standin(code))
        try:
            triggered = await runner.trigger(DAG_MATERIALIZE)
            assert await runner.wait(DAG_MATERIALIZE) == 1
            return triggered
        finally:
            await runner.aclose()

    triggered = run(scenario())
    assert completed_events(redis_client) == [
        PipelineCompleted(dag_id=DAG_MATERIALIZE, dag_run_id=triggered.dag_run_id, state="failed")
    ]


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_local_aclose_terminates_then_kills(
    isolated_settings: GatewaySettings, redis_client: redis.Redis
) -> None:
    stubborn = standin(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )

    async def scenario() -> tuple[list[str], list[int | None]]:
        polite = LocalRunner(isolated_settings, command=SLEEPER, stop_grace_s=5)
        stubborn_runner = LocalRunner(isolated_settings, command=stubborn, stop_grace_s=0.3)
        ids = [
            (await polite.trigger(DAG_MATERIALIZE)).dag_run_id,
            (await stubborn_runner.trigger(DAG_PIPELINE)).dag_run_id,
        ]
        stubborn_run = stubborn_runner.current(DAG_PIPELINE)
        assert stubborn_run is not None
        await wait_for_text(stubborn_run.log_path, "ready")
        started = time.monotonic()
        await polite.aclose()
        await stubborn_runner.aclose()
        assert time.monotonic() - started < 5
        codes = [await polite.wait(DAG_MATERIALIZE), await stubborn_runner.wait(DAG_PIPELINE)]
        with pytest.raises(DependencyUnavailable):
            await polite.trigger(DAG_MATERIALIZE)
        return ids, codes

    ids, codes = run(scenario())
    assert codes == [-signal.SIGTERM, -signal.SIGKILL]
    assert completed_events(redis_client) == [
        PipelineCompleted(dag_id=DAG_MATERIALIZE, dag_run_id=ids[0], state="failed"),
        PipelineCompleted(dag_id=DAG_PIPELINE, dag_run_id=ids[1], state="failed"),
    ]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_local_runs_the_real_materialize_pipeline(
    isolated_settings: GatewaySettings, redis_client: redis.Redis
) -> None:
    """``python -m vroom_pipelines materialize`` through the runner: the pipeline's own
    pipeline-completed event arrives on the stream with the run id the runner gave."""
    seed_synthetic(isolated_settings, 30)

    async def scenario() -> tuple[TriggeredRun, int | None, Path]:
        runner = LocalRunner(isolated_settings)
        try:
            triggered = await runner.trigger(DAG_MATERIALIZE)
            current = runner.current(DAG_MATERIALIZE)
            assert current is not None
            return triggered, await runner.wait(DAG_MATERIALIZE), current.log_path
        finally:
            await runner.aclose()

    triggered, returncode, log_path = run(scenario())
    log_text = log_path.read_text()
    assert returncode == 0, log_text
    assert "Materialized" in log_text
    assert completed_events(redis_client) == [
        PipelineCompleted(dag_id=DAG_MATERIALIZE, dag_run_id=triggered.dag_run_id, state="success")
    ]
    assert isolated_settings.offline_store_path.is_file()


# --- kubernetes ---------------------------------------------------------------------------

NAMESPACE = "vroom"
MATERIALIZE_CJ = "vroom-forecast-materialize"
PIPELINE_CJ = "vroom-forecast-pipeline"
JOBS_PATH = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"


@pytest.fixture
def fake_batch() -> Iterator[FakeBatch]:
    fake = FakeBatch(
        NAMESPACE,
        cronjobs={
            MATERIALIZE_CJ: cronjob(NAMESPACE, MATERIALIZE_CJ, uid="uid-m"),
            PIPELINE_CJ: cronjob(NAMESPACE, PIPELINE_CJ, uid="uid-p"),
        },
    )
    with serve(fake):
        yield fake


def kube_runner(fake: FakeBatch, **overrides: Any) -> KubernetesRunner:
    settings = GatewaySettings(pipeline_runner="kubernetes", kube_namespace=NAMESPACE, **overrides)
    return KubernetesRunner(
        settings, kube_client.ApiClient(kube_client.Configuration(host=fake.url))
    )


def trigger(runner: KubernetesRunner, dag_id: Any) -> TriggeredRun:
    async def go() -> TriggeredRun:
        try:
            return await runner.trigger(dag_id)
        finally:
            await runner.aclose()

    return run(go())


def test_kube_creates_a_job_from_the_cronjob(fake_batch: FakeBatch) -> None:
    # Finished runs of this DAG and a running one of the other do not block it.
    fake_batch.jobs += [
        job(
            NAMESPACE,
            "done",
            DAG_PIPELINE,
            "r1",
            {"conditions": [{"type": "Complete", "status": "True"}]},
        ),
        job(
            NAMESPACE,
            "broke",
            DAG_PIPELINE,
            "r2",
            {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]},
        ),
        job(NAMESPACE, "busy", DAG_MATERIALIZE, "r3", {"active": 1}),
    ]
    answer = trigger(kube_runner(fake_batch), DAG_PIPELINE)
    assert answer.dag_id == DAG_PIPELINE
    assert RUN_ID.match(answer.dag_run_id)

    get, listing, create = fake_batch.requests
    assert (get.method, get.path, get.query, get.body) == (
        "GET",
        f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{PIPELINE_CJ}",
        {},
        None,
    )
    assert (listing.method, listing.path, listing.query) == (
        "GET",
        JOBS_PATH,
        {"labelSelector": [f"vroom-forecast.io/dag-id={DAG_PIPELINE}"]},
    )
    assert (create.method, create.path, create.query) == (
        "POST",
        JOBS_PATH,
        {"fieldManager": ["vroom-gateway"]},
    )
    assert create.headers["content-type"] == "application/json"

    body = create.body
    template = cronjob(NAMESPACE, PIPELINE_CJ)["spec"]["jobTemplate"]
    assert set(body) == {"apiVersion", "kind", "metadata", "spec"}
    assert (body["apiVersion"], body["kind"]) == ("batch/v1", "Job")
    meta = body["metadata"]
    assert re.fullmatch(rf"{PIPELINE_CJ}-\d{{14}}-[0-9a-f]{{4}}", meta["name"])
    assert meta["namespace"] == NAMESPACE
    run_label = label_value(answer.dag_run_id)
    assert meta["labels"] == {
        **template["metadata"]["labels"],
        "vroom-forecast.io/dag-id": DAG_PIPELINE,
        "vroom-forecast.io/dag-run-id": run_label,
    }
    assert meta["annotations"] == {
        "team": "ml",
        "cronjob.kubernetes.io/instantiate": "manual",
        "vroom-forecast.io/dag-run-id": answer.dag_run_id,
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": PIPELINE_CJ,
            "uid": "uid-p",
            "controller": True,
        }
    ]
    # The spec is the template's, plus the run id in every container's environment.
    expected = json.loads(json.dumps(template["spec"]))
    pod = expected["template"]
    pod["metadata"]["labels"].update(
        {"vroom-forecast.io/dag-id": DAG_PIPELINE, "vroom-forecast.io/dag-run-id": run_label}
    )
    main, sidecar = pod["spec"]["containers"]
    main["env"] = [
        {"name": "VROOM_REDIS_URL", "value": "redis://redis:6379/0"},
        {"name": "VROOM_DAG_RUN_ID", "value": answer.dag_run_id},
    ]
    sidecar["env"] = [{"name": "VROOM_DAG_RUN_ID", "value": answer.dag_run_id}]
    assert body["spec"] == expected
    assert body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == 1


def test_kube_materialize_uses_its_own_cronjob(fake_batch: FakeBatch) -> None:
    trigger(kube_runner(fake_batch), DAG_MATERIALIZE)
    create = fake_batch.requests[-1]
    assert create.body["metadata"]["name"].startswith(f"{MATERIALIZE_CJ}-")
    assert create.body["metadata"]["ownerReferences"][0]["uid"] == "uid-m"
    assert create.body["metadata"]["labels"]["vroom-forecast.io/dag-id"] == DAG_MATERIALIZE


@pytest.mark.parametrize(
    "status",
    [{"active": 1}, {}, {"conditions": [{"type": "Complete", "status": "False"}]}],
    ids=["active", "pending", "not-yet-complete"],
)
def test_kube_refuses_while_a_job_of_the_dag_is_active(
    fake_batch: FakeBatch, status: dict[str, Any]
) -> None:
    fake_batch.jobs.append(job(NAMESPACE, "running-one", DAG_PIPELINE, "manual__earlier", status))
    with pytest.raises(Conflict) as conflict:
        trigger(kube_runner(fake_batch), DAG_PIPELINE)
    assert "manual__earlier" in conflict.value.message
    assert f"{NAMESPACE}/running-one" in conflict.value.message
    assert [r.method for r in fake_batch.requests] == ["GET", "GET"]  # nothing created


def test_kube_second_trigger_conflicts_with_the_first(fake_batch: FakeBatch) -> None:
    first = trigger(kube_runner(fake_batch), DAG_PIPELINE)
    with pytest.raises(Conflict) as conflict:
        trigger(kube_runner(fake_batch), DAG_PIPELINE)
    assert first.dag_run_id in conflict.value.message


def test_kube_long_cronjob_name_gives_a_valid_job_name(fake_batch: FakeBatch) -> None:
    name = "vroom-forecast-" + "very-long-" * 6 + "pipeline"
    fake_batch.cronjobs[name] = cronjob(NAMESPACE, name)
    trigger(kube_runner(fake_batch, kube_pipeline_cronjob=name), DAG_PIPELINE)
    created = fake_batch.jobs[-1]["metadata"]["name"]  # the fake validated it
    assert len(created) <= 63


def test_kube_missing_cronjob_is_named(fake_batch: FakeBatch) -> None:
    with pytest.raises(NotFound) as error:
        trigger(kube_runner(fake_batch, kube_pipeline_cronjob="nope"), DAG_PIPELINE)
    assert f"CronJob {NAMESPACE}/nope" in error.value.message
    assert "not found" in error.value.message


@pytest.mark.parametrize(
    ("kind", "status", "error", "words"),
    [
        ("get-cronjob", 403, PermissionDenied, "get on cronjobs.batch"),
        ("list-jobs", 403, PermissionDenied, "list on jobs.batch"),
        ("create-job", 403, PermissionDenied, "create on jobs.batch"),
        ("create-job", 401, PermissionDenied, "create on jobs.batch"),
        ("create-job", 409, Conflict, "HTTP 409"),
        ("list-jobs", 500, DependencyUnavailable, "HTTP 500"),
        # The API server rejected the Job made from the chart's CronJob: its reason names
        # the field; retrying would not help.
        ("create-job", 422, InvalidInput, "rejected (HTTP 422)"),
    ],
)
def test_kube_api_errors_are_mapped(
    fake_batch: FakeBatch, kind: str, status: int, error: type[Exception], words: str
) -> None:
    fake_batch.fail[kind] = status
    with pytest.raises(error) as raised:
        trigger(kube_runner(fake_batch), DAG_PIPELINE)
    assert words in str(raised.value)


def test_kube_unreachable_api_server(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    runner = KubernetesRunner(
        GatewaySettings(state_dir=tmp_path, pipeline_runner="kubernetes", kube_namespace=NAMESPACE),
        kube_client.ApiClient(kube_client.Configuration(host=f"http://127.0.0.1:{port}")),
    )
    with pytest.raises(DependencyUnavailable) as error:
        trigger(runner, DAG_PIPELINE)
    assert error.value.dependency == "kubernetes"


def test_kube_without_any_config_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    runner = make_runner(GatewaySettings(state_dir=tmp_path, pipeline_runner="kubernetes"))
    with pytest.raises(DependencyUnavailable):
        run(runner.trigger(DAG_PIPELINE))


# --- airflow --------------------------------------------------------------------------


@dataclass
class FakeAirflow:
    """Answers ``POST /api/v1/dags/{dag_id}/dagRuns`` like Airflow 2 (scripted status)."""

    status: int = 200
    answer_run_id: str | None = None
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        match = re.fullmatch(r"/api/v1/dags/([^/]+)/dagRuns", path)
        if method != "POST" or match is None:
            return 404, {"title": "Not Found", "status": 404, "detail": f"no route {path}"}
        if self.status != 200:
            detail = {
                401: "Unauthorized",
                403: "Forbidden",
                404: f"DAG with dag_id: '{match[1]}' not found",
                409: f"DAGRun with DAG ID: '{match[1]}' and DAGRun ID: "
                f"'{body.get('dag_run_id')}' already exists",
            }.get(self.status, "boom")
            return self.status, {
                "title": "error",
                "status": self.status,
                "detail": detail,
                "type": "x",
            }
        return 200, {
            "dag_id": match[1],
            "dag_run_id": self.answer_run_id or body["dag_run_id"],
            "state": "queued",
            "conf": body.get("conf", {}),
            "external_trigger": True,
        }


@pytest.fixture
def make_fake_airflow() -> Iterator[Callable[..., FakeAirflow]]:
    with ExitStack() as stack:

        def make(**options: Any) -> FakeAirflow:
            fake = FakeAirflow(**options)

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length)) if length else None
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    fake.requests.append((self.command, self.path, headers, body))
                    status, answer = fake.handle(self.command, self.path, body)
                    data = json.dumps(answer).encode()
                    self.send_response(status)
                    self.send_header(
                        "Content-Type",
                        "application/problem+json" if status >= 400 else "application/json",
                    )
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

                def log_message(self, format: str, *args: Any) -> None:
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()

            def stop() -> None:
                server.shutdown()
                server.server_close()
                thread.join(timeout=5)

            stack.callback(stop)
            fake.url = f"http://127.0.0.1:{server.server_address[1]}"
            return fake

        yield make


def airflow_trigger(
    settings: GatewaySettings, dag_id: Any = DAG_PIPELINE, **options: Any
) -> TriggeredRun:
    async def go() -> TriggeredRun:
        runner = AirflowRunner(settings, **options)
        try:
            return await runner.trigger(dag_id)
        finally:
            await runner.aclose()

    return run(go())


def test_airflow_triggers_the_dag_run_with_basic_auth(
    make_fake_airflow: Callable[..., FakeAirflow], tmp_path: Path
) -> None:
    fake = make_fake_airflow(answer_run_id="manual__as-airflow-named-it")
    settings = GatewaySettings(
        state_dir=tmp_path,
        airflow_url=fake.url,
        airflow_username="vroom",
        airflow_password="s3cret",
    )
    answer = airflow_trigger(settings, DAG_MATERIALIZE)
    assert answer == TriggeredRun(dag_id=DAG_MATERIALIZE, dag_run_id="manual__as-airflow-named-it")
    ((method, path, headers, body),) = fake.requests
    assert (method, path) == ("POST", f"/api/v1/dags/{DAG_MATERIALIZE}/dagRuns")
    assert headers["authorization"] == "Basic " + base64.b64encode(b"vroom:s3cret").decode()
    assert headers["content-type"] == "application/json"
    assert set(body) == {"dag_run_id", "conf"}
    assert body["conf"] == {}
    assert RUN_ID.match(body["dag_run_id"])


def test_airflow_without_credentials_and_with_an_api_url(
    make_fake_airflow: Callable[..., FakeAirflow], tmp_path: Path
) -> None:
    fake = make_fake_airflow()
    answer = airflow_trigger(GatewaySettings(state_dir=tmp_path, airflow_url=f"{fake.url}/api/v1/"))
    ((_method, path, headers, body),) = fake.requests
    assert path == f"/api/v1/dags/{DAG_PIPELINE}/dagRuns"
    assert "authorization" not in headers
    assert answer.dag_run_id == body["dag_run_id"]  # Airflow kept the id we gave


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (409, Conflict, "already exists"),
        (401, PermissionDenied, "airflow_username"),
        (403, PermissionDenied, "HTTP 403"),
        (404, NotFound, f"has no DAG {DAG_PIPELINE}"),
        (400, DependencyUnavailable, "HTTP 400"),
        (500, DependencyUnavailable, "HTTP 500"),
        (503, DependencyUnavailable, "HTTP 503"),
    ],
)
def test_airflow_errors_are_mapped(
    make_fake_airflow: Callable[..., FakeAirflow],
    tmp_path: Path,
    status: int,
    error: type[Exception],
    words: str,
) -> None:
    fake = make_fake_airflow(status=status)
    with pytest.raises(error) as raised:
        airflow_trigger(
            GatewaySettings(state_dir=tmp_path, airflow_url=fake.url, airflow_username="u")
        )
    assert words in str(raised.value)
    assert len(fake.requests) == 1  # answered: never retried


def test_airflow_unreachable_is_retried_then_unavailable(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as raised:
        airflow_trigger(
            GatewaySettings(state_dir=tmp_path, airflow_url=f"http://127.0.0.1:{port}"),
            retry_wait_s=0.01,
        )
    assert raised.value.dependency == "airflow"
    assert time.monotonic() - started < 5


def test_airflow_retries_only_connect_errors(tmp_path: Path) -> None:
    settings = GatewaySettings(state_dir=tmp_path, airflow_url="http://airflow.test")
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append("call")
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"dag_run_id": json.loads(request.content)["dag_run_id"]})

    answer = airflow_trigger(settings, transport=httpx.MockTransport(flaky), retry_wait_s=0.01)
    assert len(calls) == 3
    assert RUN_ID.match(answer.dag_run_id)

    reads: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        reads.append("call")
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(DependencyUnavailable):
        airflow_trigger(settings, transport=httpx.MockTransport(slow), retry_wait_s=0.01)
    assert len(reads) == 1  # the request may have been received: not retried
