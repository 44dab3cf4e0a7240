"""``GET /model`` (the champion's metadata from the MLflow registry) and ``POST /reload``
(re-resolve the champion and roll it out through the configured rollout backend)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from vroom_gateway.clients.registry import champion_info
from vroom_gateway.deps import SettingsDep
from vroom_gateway.protection import rate_limited
from vroom_gateway.schemas import ModelInfo, ReloadResult
from vroom_rollout import make_rollout

router = APIRouter(tags=["model"])


@router.get("/model")
async def model(settings: SettingsDep) -> ModelInfo:
    """Version, run, training time, metrics, params and feature importances of the
    champion; 404 when none was promoted, 503 when MLflow is down."""
    return await champion_info(settings.mlflow_uri, settings.model_name)


@router.post("/reload", dependencies=[Depends(rate_limited("reload"))])
async def reload(settings: SettingsDep) -> ReloadResult:
    """Roll the registry's current champion out: locally the predictor hot-reloads it,
    on a cluster the InferenceService's storageUri is patched. ``unchanged`` when it
    already serves that version."""
    result = await run_in_threadpool(lambda: make_rollout(settings).rollout())
    return ReloadResult(
        status="reloaded" if result.status == "rolled-out" else "unchanged",
        previous_version=result.previous_version or "",
        current_version=result.version or "",
    )
