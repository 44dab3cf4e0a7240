"""The ``airflow`` runner: a pipeline as a DAG run through Airflow's REST API."""

from __future__ import annotations

from typing import Any, Final

import httpx
import structlog
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
)
from vroom_common.events import DagId
from vroom_common.http_errors import error_message
from vroom_gateway.runners.base import command_of
from vroom_gateway.schemas import TriggeredRun
from vroom_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

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
        settings: GatewaySettings,
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
        command_of(dag_id)
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
