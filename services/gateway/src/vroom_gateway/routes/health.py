"""``GET /health``: is a model serving, which version, is the feature service ready."""

from __future__ import annotations

import asyncio

import numpy as np
import structlog
from fastapi import APIRouter

from vroom_common.errors import DependencyUnavailable, ModelNotReady, VroomError
from vroom_features.contract import N_FEATURES
from vroom_gateway.deps import FeaturesDep, PredictorDep, SettingsDep
from vroom_gateway.schemas import Health, HealthStatus

router = APIRouter(tags=["health"])
log = structlog.get_logger(__name__)

#: The row of the probe inference: any finite row is valid input.
_PROBE = np.zeros((1, N_FEATURES), dtype=np.float32)


@router.get("/health")
async def health(settings: SettingsDep, predictor: PredictorDep, features: FeaturesDep) -> Health:
    """Status from a one-row probe inference over gRPC: it answers with the version
    serving right now (exact across reloads), "not ready" (``no_model``) or nothing
    (``loading``). Never fails: every problem is a status."""
    probe, feast_online = await asyncio.gather(
        predictor.predict(_PROBE), features.is_ready(), return_exceptions=True
    )
    status: HealthStatus
    version: str | None = None
    if isinstance(probe, ModelNotReady):
        status = "no_model"
    elif isinstance(probe, DependencyUnavailable):
        status = "loading"
    elif isinstance(probe, BaseException):
        if not isinstance(probe, VroomError):
            log.warning("health probe failed", error=repr(probe))
        status = "loading"
    else:
        status, version = "ok", probe.model_version
    return Health(
        status=status,
        model_name=settings.model_name,
        model_version=version,
        mlflow_uri=settings.mlflow_uri,
        feast_online=feast_online is True,
    )
