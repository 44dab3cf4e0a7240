"""``GET /model``: the champion's metadata from the MLflow registry."""

from __future__ import annotations

from fastapi import APIRouter

from vroom_gateway.clients.registry import champion_info
from vroom_gateway.deps import SettingsDep
from vroom_gateway.schemas import ModelInfo

router = APIRouter(tags=["model"])


@router.get("/model")
async def model(settings: SettingsDep) -> ModelInfo:
    """Version, run, training time, metrics, params and feature importances of the
    champion; 404 when none was promoted, 503 when MLflow is down."""
    return await champion_info(settings.mlflow_uri, settings.model_name)
