"""The champion's metadata from the MLflow registry (through its adapter; the blocking
client calls run in a thread)."""

from __future__ import annotations

import asyncio
from typing import Final

from vroom_gateway.schemas import ModelInfo
from vroom_registry import ALIAS_CHAMPION, ModelRegistry

#: Prefix of the metrics training logs per feature.
IMPORTANCE_PREFIX: Final = "feature_importance_"
#: On a request path: a registry slower than this to answer its health check is down.
HEALTH_TIMEOUT_S: Final = 2.0


def _champion(mlflow_uri: str, model_name: str) -> ModelInfo:
    models = ModelRegistry(mlflow_uri, model_name, health_timeout_s=HEALTH_TIMEOUT_S)
    version = models.get(ALIAS_CHAMPION, "none promoted yet")
    run = models.run(version) if version.run_id else None
    metrics = run.metrics if run else {}
    return ModelInfo(
        version=version.version,
        run_id=version.run_id or "",
        trained_at=run.started_at.isoformat() if run and run.started_at else None,
        metrics={k: v for k, v in metrics.items() if not k.startswith(IMPORTANCE_PREFIX)},
        params=run.params if run else {},
        feature_importances={
            k.removeprefix(IMPORTANCE_PREFIX): v
            for k, v in metrics.items()
            if k.startswith(IMPORTANCE_PREFIX)
        },
    )


async def champion_info(mlflow_uri: str, model_name: str) -> ModelInfo:
    """The champion version of ``model_name``, its run's metrics, params and importances.

    Raises:
        NotFound: the model has no champion.
        DependencyUnavailable: MLflow does not answer.
    """
    return await asyncio.to_thread(_champion, mlflow_uri, model_name)
