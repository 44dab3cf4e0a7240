"""FastAPI dependencies: the clients and settings the app's lifespan opened."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vroom_common.settings import Settings
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.clients.predictor import PredictorClient


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_predictor(request: Request) -> PredictorClient:
    predictor: PredictorClient = request.app.state.predictor
    return predictor


async def get_features(request: Request) -> FeatureServiceClient:
    features: FeatureServiceClient = request.app.state.features
    return features


SettingsDep = Annotated[Settings, Depends(get_settings)]
PredictorDep = Annotated[PredictorClient, Depends(get_predictor)]
FeaturesDep = Annotated[FeatureServiceClient, Depends(get_features)]
