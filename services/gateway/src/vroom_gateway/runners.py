"""Pipeline runners: how ``/materialize`` and ``/train`` start a pipeline run.

Three backends, chosen by ``Settings.pipeline_runner`` (:func:`make_runner`):

``local``
    A background process, ``python -m vroom_pipelines <command> --dag-run-id <id>``,
    with the gateway's settings in its environment and its output in
    ``<state_dir>/logs/pipelines/<dag_id>/<run id>.log``. One run per DAG at a time
    in this gateway process (a second trigger raises :class:`Conflict`); different
    DAGs may run together. The pipeline publishes its own ``pipeline-completed``
    event; when a child ends without having published it (killed by a signal,
    crashed at import, Redis down at the time), the runner publishes it instead, so
    clients always learn the end. At shutdown (:meth:`LocalRunner.aclose`) running
    children get SIGTERM (their whole process group), then SIGKILL after a grace
    period: a stopped gateway leaves no orphan pipelines behind (a gateway killed
    with SIGKILL does: children run in their own session, so give the supervisor a
    stop timeout longer than ``stop_grace_s``). Run once per gateway process: with
    several workers, use the kubernetes or airflow runner.
``kubernetes``
    A Job instantiated from a suspended CronJob's ``jobTemplate`` (like ``kubectl
    create job --from=cronjob/<name>``), refused while a Job of the same DAG is
    still active. RBAC needed: ``get`` on ``cronjobs`` and ``list`` + ``create`` on
    ``jobs`` (group ``batch``) in ``kube_namespace``.
``airflow``
    A DAG run through Airflow 2's stable REST API
    (``POST /api/v1/dags/{dag_id}/dagRuns``), with HTTP basic auth when configured.
    The body names the run id and an empty ``conf``; ``logical_date`` is left out, so
    Airflow sets it to now (Airflow 3's ``/api/v2`` is not supported).

Every backend answers with the run id it started (:class:`TriggeredRun`); the end
of the run arrives as a ``pipeline-completed`` event on ``Stream.PIPELINES``.
Errors are the named ``vroom_common.errors`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
import redis.asyncio as aioredis
import structlog
import urllib3
from kubernetes import client as kube_client
from kubernetes.client.exceptions import ApiException
from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from vroom_common import events
from vroom_common.errors import (
    Conflict,
    DependencyUnavailable,
    NotFound,
    PermissionDenied,
    VroomError,
)
from vroom_common.events import DAG_MATERIALIZE, DAG_PIPELINE, DagId, PipelineCompleted
from vroom_common.http_errors import error_message
from vroom_common.redis_clients import async_redis_client
from vroom_common.settings import Settings
from vroom_gateway.schemas import TriggeredRun
from vroom_rollout.kubernetes import api_message, load_api_client

log = structlog.get_logger(__name__)

#: The ``vroom_pipelines`` command that runs each DAG.
PIPELINE_COMMANDS: Final[dict[str, str]] = {
    DAG_MATERIALIZE: "materialize",
    DAG_PIPELINE: "pipeline",
}
#: Environment variable (and CLI option ``--dag-run-id``) carrying the run id.
RUN_ID_ENV: Final = "VROOM_DAG_RUN_ID"

RunnerName = Literal["local", "kubernetes", "airflow"]


@runtime_checkable
class PipelineRunner(Protocol):
    """Starts pipeline runs; the run itself reports its end as ``pipeline-completed``."""

    name: str

    async def trigger(self, dag_id: DagId) -> TriggeredRun:
        """Start a run of ``dag_id``; ``Conflict`` when one is already running."""
        ...

    async def aclose(self) -> None:
        """Release what the runner holds (connections; local: running children)."""
        ...


def make_runner(settings: Settings) -> PipelineRunner:
    """The runner ``settings.pipeline_runner`` names (``airflow`` whenever
    ``airflow_url`` is set). Nothing connects until the first trigger."""
    if settings.pipeline_runner == "airflow":
        return AirflowRunner(settings)
    if settings.pipeline_runner == "kubernetes":
        return KubernetesRunner(settings)
    return LocalRunner(settings)


def _command_of(dag_id: str) -> str:
    try:
        return PIPELINE_COMMANDS[dag_id]
    except KeyError:  # DagId is a Literal; this guards callers that bypass the type.
        raise NotFound(
            f"unknown pipeline {dag_id!r}; known: {', '.join(PIPELINE_COMMANDS)}"
        ) from None


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(run_id: str) -> str:
    """``run_id`` as a file name: runs of other characters become ``_``."""
    name = _UNSAFE_FILE_CHARS.sub("_", run_id).strip("._") or "run"
    return name[:200]


# --- local ----------------------------------------------------------------------------

#: Builds the child's argv from the DAG id and the run id.
CommandFactory = Callable[[str, str], Sequence[str]]


def pipeline_command(dag_id: str, run_id: str) -> list[str]:
    """``python -m vroom_pipelines <command> --dag-run-id <run_id>`` in this interpreter."""
    return [sys.executable, "-m", "vroom_pipelines", _command_of(dag_id), "--dag-run-id", run_id]


@dataclass
class LocalRun:
    """A pipeline process started by :class:`LocalRunner`."""

    dag_id: DagId
    run_id: str
    log_path: Path
    process: asyncio.subprocess.Process
    started_at: float
    """``time.time()`` when the process started."""
    waiter: asyncio.Task[int] = field(init=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        """Until the process has ended and its end has been reported."""
        return not self.waiter.done()


class LocalRunner:
    """Pipelines as background processes of the gateway (see the module docstring).

    Args:
        settings: Passed to the child as environment variables (``Settings.as_env``
            over the gateway's own environment); ``state_dir`` holds the logs and
            ``redis_url`` is where a missing ``pipeline-completed`` is published.
        command: Builds the child's argv; the default runs ``vroom_pipelines``.
        stop_grace_s: At :meth:`aclose`, seconds between SIGTERM and SIGKILL.
    """

    name: str = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        command: CommandFactory = pipeline_command,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.command = command
        self.stop_grace_s = stop_grace_s
        self.log_dir = settings.state_dir / "logs" / "pipelines"
        self._runs: dict[str, LocalRun] = {}
        self._lock = asyncio.Lock()
        self._redis: aioredis.Redis | None = None
        self._closed = False

    def current(self, dag_id: str) -> LocalRun | None:
        """The run of ``dag_id`` still running, if any."""
        run = self._runs.get(dag_id)
        return run if run is not None and run.running else None

    def log_path(self, dag_id: str, run_id: str) -> Path:
        return self.log_dir / dag_id / f"{safe_file_name(run_id)}.log"

    async def trigger(self, dag_id: DagId) -> TriggeredRun:
        _command_of(dag_id)
        async with self._lock:  # check-then-start is atomic across concurrent requests
            if self._closed:
                raise DependencyUnavailable("pipeline runner", "the gateway is shutting down")
            running = self.current(dag_id)
            if running is not None:
                raise Conflict(
                    f"pipeline {dag_id} is already running (run {running.run_id}, "
                    f"pid {running.pid}); wait for its pipeline-completed event"
                )
            run = await self._start(dag_id, events.new_run_id())
            self._runs[dag_id] = run
        return TriggeredRun(dag_id=dag_id, dag_run_id=run.run_id)

    async def _start(self, dag_id: DagId, run_id: str) -> LocalRun:
        argv = list(self.command(dag_id, run_id))
        if self.command is pipeline_command and importlib.util.find_spec("vroom_pipelines") is None:
            raise DependencyUnavailable(
                "vroom_pipelines",
                "the pipelines are not installed next to the gateway; install them or "
                "use pipeline_runner=kubernetes or airflow",
            )
        log_path = self.log_path(dag_id, run_id)
        env = {
            **os.environ,
            **self.settings.as_env(),
            RUN_ID_ENV: run_id,
            "PYTHONUNBUFFERED": "1",
        }
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # Appended: a run id reused within the same second keeps the earlier output.
            with log_path.open("ab") as log_file:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    # Its own process group: terminal signals aimed at the gateway do not
                    # reach it, and aclose() can stop it together with its workers.
                    start_new_session=True,
                )
        except OSError as exc:
            raise DependencyUnavailable(
                "pipeline process", f"could not start {argv[0]} for {dag_id}: {exc}"
            ) from exc
        run = LocalRun(dag_id, run_id, log_path, process, started_at=time.time())
        run.waiter = asyncio.create_task(self._wait(run), name=f"pipeline-{dag_id}-{run_id}")
        log.info(
            "pipeline process started",
            dag_id=dag_id,
            dag_run_id=run_id,
            pid=process.pid,
            log=str(log_path),
        )
        return run

    async def wait(self, dag_id: str) -> int | None:
        """Wait for the current (or last) run of ``dag_id`` to end; its exit code."""
        run = self._runs.get(dag_id)
        if run is None:
            return None
        return await asyncio.shield(run.waiter)

    async def _wait(self, run: LocalRun) -> int:
        """Reap the child, then make sure its ``pipeline-completed`` event exists."""
        returncode = await run.process.wait()
        state: Literal["success", "failed"] = "success" if returncode == 0 else "failed"
        log.info(
            "pipeline process ended",
            dag_id=run.dag_id,
            dag_run_id=run.run_id,
            pid=run.pid,
            returncode=returncode,
            log=str(run.log_path),
        )
        try:
            await self._ensure_completed(run, state)
        except (RedisError, OSError) as exc:
            log.error(
                "pipeline-completed not verified or published",
                dag_id=run.dag_id,
                dag_run_id=run.run_id,
                error=str(exc),
            )
        return returncode

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = async_redis_client(self.settings)
        return self._redis

    async def _ensure_completed(self, run: LocalRun, state: Literal["success", "failed"]) -> None:
        client = self._client()
        # Entry ids are millisecond times; a minute of slack covers clock skew.
        since = f"{int(run.started_at * 1000) - 60_000}-0"
        entries = await client.xrevrange(events.Stream.PIPELINES, "+", since, count=1000)
        for _entry_id, fields in entries:
            try:
                event = events.decode(fields)
            except ValueError:  # pydantic.ValidationError is a ValueError
                continue
            if (
                isinstance(event, PipelineCompleted)
                and event.dag_id == run.dag_id
                and event.dag_run_id == run.run_id
            ):
                return
        event = PipelineCompleted(dag_id=run.dag_id, dag_run_id=run.run_id, state=state)
        await events.publish_async(client, event, maxlen=self.settings.stream_maxlen)
        log.warning(
            "pipeline ended without reporting; pipeline-completed published for it",
            dag_id=run.dag_id,
            dag_run_id=run.run_id,
            state=state,
            returncode=run.process.returncode,
        )

    async def aclose(self) -> None:
        """Stop running children (SIGTERM to their process group, SIGKILL after
        ``stop_grace_s``), report their end, and close the Redis connection."""
        async with self._lock:
            self._closed = True
        running = [run for run in self._runs.values() if run.running]
        for run in running:
            log.info("stopping pipeline process", dag_id=run.dag_id, pid=run.pid)
            _signal_group(run.process, signal.SIGTERM)
        if running:
            _done, pending = await asyncio.wait(
                [run.waiter for run in running], timeout=self.stop_grace_s
            )
            for run in running:
                if run.waiter in pending:
                    log.warning("pipeline process ignored SIGTERM; killing", pid=run.pid)
                    _signal_group(run.process, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)  # the child leads its own group (start_new_session)


# --- kubernetes ---------------------------------------------------------------------------

#: Labels and annotations the runner puts on the Jobs it creates.
LABEL_DAG_ID: Final = "vroom-forecast.io/dag-id"
LABEL_DAG_RUN_ID: Final = "vroom-forecast.io/dag-run-id"
ANNOTATION_DAG_RUN_ID: Final = "vroom-forecast.io/dag-run-id"
#: What ``kubectl create job --from=cronjob/...`` marks its Jobs with.
ANNOTATION_INSTANTIATE: Final = "cronjob.kubernetes.io/instantiate"
#: Recorded in ``metadata.managedFields`` as the writer of the Jobs.
KUBE_FIELD_MANAGER: Final = "vroom-gateway"
#: (connect, read) seconds for each API request.
KUBE_REQUEST_TIMEOUT: Final = (5.0, 30.0)
#: Longest Job name (its ``job-name`` pod label must be a valid label value).
MAX_NAME: Final = 63

_LABEL_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_INVALID = re.compile(r"[^a-z0-9-]+")


def label_value(text: str) -> str:
    """``text`` as a valid label value (≤ 63 characters of ``[A-Za-z0-9._-]``,
    alphanumeric at both ends)."""
    value = _LABEL_INVALID.sub("-", text)[:MAX_NAME]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def job_name(cronjob: str, now: datetime, suffix: str) -> str:
    """A DNS-1123 label ≤ 63 characters: ``<cronjob>-<UTC yyyymmddhhmmss>-<suffix>``."""
    tail = f"-{now.astimezone(UTC):%Y%m%d%H%M%S}-{suffix}"
    prefix = _NAME_INVALID.sub("-", cronjob.lower())[: MAX_NAME - len(tail)].strip("-")
    return f"{prefix or 'pipeline'}{tail}"


def job_is_active(job: dict[str, Any]) -> bool:
    """Running pods, or not finished yet (no ``Complete``/``Failed`` condition)."""
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = job.get("status") or {}
    if int(status.get("active") or 0) > 0:
        return True
    return not any(
        isinstance(c, dict)
        and c.get("type") in ("Complete", "Failed")
        and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def job_from_cronjob(
    cronjob: dict[str, Any], dag_id: str, run_id: str, name: str
) -> dict[str, Any]:
    """The Job ``kubectl create job --from=cronjob/...`` would make, labelled with the
    DAG and run, with ``VROOM_DAG_RUN_ID`` in every container's environment."""
    metadata = cronjob.get("metadata") or {}
    template = copy.deepcopy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    template_meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    run_labels = {LABEL_DAG_ID: dag_id, LABEL_DAG_RUN_ID: label_value(run_id)}

    pod_template = spec.setdefault("template", {})
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **run_labels}
    pod_spec = pod_template.setdefault("spec", {})
    for container in pod_spec.get("containers") or []:
        env = [e for e in container.get("env") or [] if e.get("name") != RUN_ID_ENV]
        env.append({"name": RUN_ID_ENV, "value": run_id})
        container["env"] = env

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": metadata.get("namespace"),
            "labels": {**(template_meta.get("labels") or {}), **run_labels},
            "annotations": {
                **(template_meta.get("annotations") or {}),
                ANNOTATION_INSTANTIATE: "manual",
                ANNOTATION_DAG_RUN_ID: run_id,
            },
            "ownerReferences": [
                {
                    "apiVersion": cronjob.get("apiVersion") or "batch/v1",
                    "kind": "CronJob",
                    "name": metadata.get("name"),
                    "uid": metadata.get("uid"),
                    "controller": True,
                }
            ],
        },
        "spec": spec,
    }


class KubernetesRunner:
    """Pipelines as Kubernetes Jobs made from the chart's suspended CronJobs.

    Args:
        settings: ``kube_namespace`` and the CronJob names
            (``kube_materialize_cronjob``, ``kube_pipeline_cronjob``).
        api_client: A ``kubernetes`` client; default: in-cluster config, else the
            kubeconfig (loaded at the first trigger).
    """

    name: str = "kubernetes"

    def __init__(self, settings: Settings, api_client: kube_client.ApiClient | None = None) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self.cronjobs: dict[str, str] = {
            DAG_MATERIALIZE: settings.kube_materialize_cronjob,
            DAG_PIPELINE: settings.kube_pipeline_cronjob,
        }
        self._api_client = api_client
        self._lock = asyncio.Lock()

    def _api(self) -> kube_client.ApiClient:
        if self._api_client is None:
            self._api_client = load_api_client()
        return self._api_client

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """One request through the client's transport (auth, TLS) with plain JSON in
        and out: the typed ``BatchV1Api`` methods would round-trip the Job through
        their models, which rejects valid manifests (``cpu: 1``) and drops fields the
        client does not know."""
        api = self._api()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request, _request_timeout=KUBE_REQUEST_TIMEOUT)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            ApiException.from_response(http_resp=response, body=None, data=None)  # raises
        return json.loads(response.data or b"")

    def _call(
        self,
        what: str,
        rbac: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """:meth:`_request`; errors become ``VroomError``s naming ``what``."""
        try:
            answer = self._request(method, path, query=query, body=body)
        except ApiException as exc:
            raise self._error(what, rbac, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable(
                "kubernetes", f"{what}: {exc or type(exc).__name__}"
            ) from exc
        except ValueError as exc:
            raise DependencyUnavailable("kubernetes", f"{what}: the answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise DependencyUnavailable("kubernetes", f"{what}: the answer is not a JSON object")
        return answer

    def _error(self, what: str, rbac: str, exc: ApiException) -> VroomError:
        message = api_message(exc)
        status = exc.status
        if status == 404:
            return NotFound(f"{what}: not found (HTTP 404): {message}")
        if status in (401, 403):
            return PermissionDenied(
                f"{what}: not allowed (HTTP {status}): {message}; the gateway's service "
                f"account needs {rbac} in namespace {self.namespace}"
            )
        if status == 409:
            return Conflict(f"{what}: conflict (HTTP 409): {message}")
        return DependencyUnavailable("kubernetes", f"{what} failed (HTTP {status}): {message}")

    def _trigger(self, dag_id: DagId) -> TriggeredRun:
        cronjob_name = self.cronjobs[dag_id]
        base = f"/apis/batch/v1/namespaces/{quote(self.namespace, safe='')}"
        cronjob = self._call(
            f"get CronJob {self.namespace}/{cronjob_name} (the template of {dag_id}; "
            "check kube_namespace and the kube_*_cronjob settings)",
            "get on cronjobs.batch",
            "GET",
            f"{base}/cronjobs/{quote(cronjob_name, safe='')}",
        )
        jobs = self._call(
            f"list Jobs of {dag_id} in namespace {self.namespace}",
            "list on jobs.batch",
            "GET",
            f"{base}/jobs",
            query=[("labelSelector", f"{LABEL_DAG_ID}={dag_id}")],
        )
        for job in jobs.get("items") or []:
            if isinstance(job, dict) and job_is_active(job):
                meta = job.get("metadata") or {}
                run = (meta.get("annotations") or {}).get(ANNOTATION_DAG_RUN_ID, "unknown")
                raise Conflict(
                    f"pipeline {dag_id} is already running (run {run}, Job "
                    f"{self.namespace}/{meta.get('name')}); wait for its pipeline-completed event"
                )
        now = datetime.now(UTC)
        run_id = events.new_run_id(now)
        name = job_name(cronjob_name, now, secrets.token_hex(2))
        body = job_from_cronjob(cronjob, dag_id, run_id, name)
        body["metadata"]["namespace"] = self.namespace
        self._call(
            f"create Job {self.namespace}/{name} from CronJob {cronjob_name}",
            "create on jobs.batch",
            "POST",
            f"{base}/jobs",
            query=[("fieldManager", KUBE_FIELD_MANAGER)],
            body=body,
        )
        log.info(
            "pipeline job created",
            dag_id=dag_id,
            dag_run_id=run_id,
            job=f"{self.namespace}/{name}",
            cronjob=cronjob_name,
        )
        return TriggeredRun(dag_id=dag_id, dag_run_id=run_id)

    async def trigger(self, dag_id: DagId) -> TriggeredRun:
        _command_of(dag_id)
        # Serialized in this process so two requests cannot both see "no active Job".
        async with self._lock:
            return await asyncio.to_thread(self._trigger, dag_id)

    async def aclose(self) -> None:
        if self._api_client is not None:
            await asyncio.to_thread(self._api_client.close)
            self._api_client = None


# --- airflow --------------------------------------------------------------------------

#: Timeouts of Airflow requests (seconds).
AIRFLOW_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)
#: Attempts of a request whose connection failed (nothing was sent, so it is safe).
AIRFLOW_CONNECT_ATTEMPTS: Final = 3


def airflow_api_base(url: str) -> str:
    """The stable REST API root (``.../api/v1``) for Airflow's base URL (either given)."""
    base = url.rstrip("/")
    return base if base.endswith("/api/v1") else f"{base}/api/v1"


class AirflowRunner:
    """Pipelines as Airflow DAG runs (Airflow 2 stable REST API, basic auth).

    Args:
        settings: ``airflow_url`` (the webserver's base URL; ``.../api/v1`` is also
            accepted), ``airflow_username`` / ``airflow_password`` (basic auth when set).
        transport: An ``httpx`` transport, for tests.
        retry_wait_s: Base of the exponential wait between connect attempts.
    """

    name: str = "airflow"

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_wait_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.api_base = airflow_api_base(settings.airflow_url)
        auth = (
            httpx.BasicAuth(settings.airflow_username, settings.airflow_password)
            if settings.airflow_username
            else None
        )
        self._client = httpx.AsyncClient(
            base_url=self.api_base, auth=auth, timeout=AIRFLOW_TIMEOUT, transport=transport
        )
        self.retry_wait_s = retry_wait_s

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((httpx.ConnectError, httpx.ConnectTimeout)),
            stop=stop_after_attempt(AIRFLOW_CONNECT_ATTEMPTS),
            wait=wait_exponential(multiplier=self.retry_wait_s, max=2.0),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._client.post(path, json=body)
        raise AssertionError("unreachable")  # pragma: no cover

    async def trigger(self, dag_id: DagId) -> TriggeredRun:
        _command_of(dag_id)
        run_id = events.new_run_id()
        path = f"/dags/{dag_id}/dagRuns"
        url = f"{self.api_base}{path}"
        try:
            response = await self._post(path, {"dag_run_id": run_id, "conf": {}})
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(
                "airflow", f"POST {url}: {exc or type(exc).__name__}"
            ) from exc
        status = response.status_code
        if status in (200, 201):
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                raise DependencyUnavailable(
                    "airflow", f"POST {url}: the answer is not a JSON object"
                )
            dag_run_id = str(answer.get("dag_run_id") or run_id)
            log.info("airflow dag run triggered", dag_id=dag_id, dag_run_id=dag_run_id)
            return TriggeredRun(dag_id=dag_id, dag_run_id=dag_run_id)
        detail = error_message(response.content, response.reason_phrase)
        if status == 409:
            raise Conflict(f"Airflow already has run {run_id} of DAG {dag_id}: {detail}")
        if status in (401, 403):
            raise PermissionDenied(
                f"Airflow refused to trigger DAG {dag_id} (HTTP {status}): {detail}; check "
                "airflow_username / airflow_password and that the user may create DAG runs"
            )
        if status == 404:
            raise NotFound(f"Airflow at {self.settings.airflow_url} has no DAG {dag_id}: {detail}")
        raise DependencyUnavailable("airflow", f"POST {url} failed (HTTP {status}): {detail}")

    async def aclose(self) -> None:
        await self._client.aclose()
