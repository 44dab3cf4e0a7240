"""``GET /health``: is a model serving, which version, is the feature service ready."""

from __future__ import annotations

import asyncio

import numpy as np
import structlog
from fastapi import APIRouter

from vroom_common.errors import DependencyUnavailable, ModelNotReady, VroomError
from vroom_features.contract import N_FEATURES
from vroom_gateway.deps import Resources, ResourcesDep
from vroom_gateway.schemas import Health, HealthStatus

router = APIRouter(tags=["health"])
log = structlog.get_logger(__name__)

#: The row of the probe inference: any finite row is valid input.
_PROBE = np.zeros((1, N_FEATURES), dtype=np.float32)


async def current_health(resources: Resources) -> Health:
    """Status from a one-row probe inference over gRPC: it answers with the version
    serving right now (exact across reloads), "not ready" (``no_model``) or nothing
    (``loading``). Never raises: every problem is a status."""
    probe, feast_online = await asyncio.gather(
        resources.predictor.predict(_PROBE), resources.features.is_ready(), return_exceptions=True
    )
    status: HealthStatus
    version = ""
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
        resources.served_version.record(version)
    settings = resources.settings
    return Health(
        status=status,
        model_name=settings.model_name,
        model_version=version,
        mlflow_uri=settings.mlflow_uri,
        feast_online=feast_online is True,
    )


@router.get("/health")
async def health(resources: ResourcesDep) -> Health:
    """Model status and version, MLflow URI, feature-service readiness. Always 200."""
    return await current_health(resources)
