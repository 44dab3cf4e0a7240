"""The predictors' drift reports (``GET /v2/monitoring`` on their REST port).

The champion's predictor must answer; the candidate's (on a cluster, its own Service)
exists only during a rollout, so its absence is not an error.
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog

from vroom_common.errors import DependencyUnavailable
from vroom_common.http_errors import error_message
from vroom_features.drift import MONITORING_PATH

log = structlog.get_logger(__name__)

PREDICTOR = "predictor"


async def _reports(client: httpx.AsyncClient, base_url: str) -> list[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}{MONITORING_PATH}"
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise DependencyUnavailable(PREDICTOR, f"{url}: {type(exc).__name__} {exc}") from exc
    if response.status_code != 200:
        raise DependencyUnavailable(
            PREDICTOR, f"{url}: {response.status_code} {error_message(response.content)}"
        )
    models: list[dict[str, Any]] = response.json()["models"]
    return models


async def drift_reports(
    champion_url: str, candidate_url: str, timeout_s: float
) -> list[dict[str, Any]]:
    """Every served model's report, once each (locally one predictor serves both).

    Raises:
        DependencyUnavailable: The champion's predictor did not answer.
    """
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        reports = await _reports(client, champion_url)
        if candidate_url.rstrip("/") != champion_url.rstrip("/"):
            try:
                reports += await _reports(client, candidate_url)
            except DependencyUnavailable as exc:
                log.info("no candidate predictor to monitor", error=exc.message)
    unique = {(r["model"], r["version"]): r for r in reports}
    return list(unique.values())
