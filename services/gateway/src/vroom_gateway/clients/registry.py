"""The champion's metadata from the MLflow registry.

MLflow's client retries for minutes against a server that is down, so its ``/health``
is asked first with a short timeout; the blocking client calls run in a thread.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import httpx
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vroom_common.errors import DependencyUnavailable, NotFound
from vroom_common.registry import ALIAS_CHAMPION
from vroom_gateway.schemas import ModelInfo

MLFLOW: Final = "MLflow"
#: Prefix of the metrics training logs per feature.
IMPORTANCE_PREFIX: Final = "feature_importance_"
HEALTH_TIMEOUT_S: Final = 2.0


def _champion(mlflow_uri: str, model_name: str) -> ModelInfo:
    client = MlflowClient(mlflow_uri)
    try:
        version = client.get_model_version_by_alias(model_name, ALIAS_CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NotFound(f"model {model_name!r} has no {ALIAS_CHAMPION} version yet") from exc
        raise DependencyUnavailable(MLFLOW, f"{mlflow_uri}: {exc.message}") from exc
    run_id = str(version.run_id or "")
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    trained_at: str | None = None
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            raise DependencyUnavailable(MLFLOW, f"run {run_id}: {exc.message}") from exc
        metrics = {k: float(v) for k, v in run.data.metrics.items()}
        params = {k: str(v) for k, v in run.data.params.items()}
        if run.info.start_time:
            trained_at = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC).isoformat()
    importances = {
        k.removeprefix(IMPORTANCE_PREFIX): v
        for k, v in metrics.items()
        if k.startswith(IMPORTANCE_PREFIX)
    }
    return ModelInfo(
        version=str(version.version),
        run_id=run_id,
        trained_at=trained_at,
        metrics={k: v for k, v in metrics.items() if not k.startswith(IMPORTANCE_PREFIX)},
        params=params,
        feature_importances=importances,
    )


async def champion_info(mlflow_uri: str, model_name: str) -> ModelInfo:
    """The champion version of ``model_name``, its run's metrics, params and importances.

    Raises:
        NotFound: the model has no champion.
        DependencyUnavailable: MLflow does not answer.
    """
    if urlsplit(mlflow_uri).scheme in ("http", "https"):
        try:
            async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
                (await client.get(f"{mlflow_uri.rstrip('/')}/health")).raise_for_status()
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(MLFLOW, f"{mlflow_uri}: {exc}") from exc
    return await asyncio.to_thread(_champion, mlflow_uri, model_name)
