"""The ``local`` runner: a pipeline as a background process of the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from vroom_common import events
from vroom_common.errors import (
    Conflict,
    DependencyUnavailable,
)
from vroom_common.events import DagId, PipelineCompleted
from vroom_common.redis_clients import async_redis_client
from vroom_gateway.runners.base import RUN_ID_ENV, command_of, safe_file_name
from vroom_gateway.schemas import TriggeredRun
from vroom_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

#: Builds the child's argv from the DAG id and the run id.
CommandFactory = Callable[[str, str], Sequence[str]]


def pipeline_command(dag_id: str, run_id: str) -> list[str]:
    """``python -m vroom_pipelines <command> --dag-run-id <run_id>`` in this interpreter."""
    return [sys.executable, "-m", "vroom_pipelines", command_of(dag_id), "--dag-run-id", run_id]


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
        settings: Passed to the child as environment variables (``GatewaySettings.as_env``
            over the gateway's own environment); ``state_dir`` holds the logs and
            ``redis_url`` is where a missing ``pipeline-completed`` is published.
        command: Builds the child's argv; the default runs ``vroom_pipelines``.
        stop_grace_s: At :meth:`aclose`, seconds between SIGTERM and SIGKILL.
    """

    name: str = "local"

    def __init__(
        self,
        settings: GatewaySettings,
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
        command_of(dag_id)
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
