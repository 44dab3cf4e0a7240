"""FastAPI dependencies: what the app's lifespan opened, read from ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from vroom_common.observability import HttpMetrics
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.clients.predictor import PredictorClient
from vroom_gateway.metrics import ServedVersion, Stages
from vroom_gateway.prediction_log import PredictionLog
from vroom_gateway.protection import BenchmarkSlots, RateLimits
from vroom_gateway.runners import PipelineRunner
from vroom_gateway.security import Authenticator
from vroom_gateway.settings import GatewaySettings
from vroom_gateway.traffic import Traffic


@dataclass
class Resources:
    """Everything the routes share, opened once at start-up."""

    settings: GatewaySettings
    predictor: PredictorClient
    features: FeatureServiceClient
    sessions: sessionmaker[Session]
    redis: aioredis.Redis
    metrics: HttpMetrics
    served_version: ServedVersion
    stages: Stages
    runner: PipelineRunner
    traffic: Traffic
    prediction_log: PredictionLog
    authenticator: Authenticator
    rate_limits: RateLimits
    benchmark_slots: BenchmarkSlots


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def get_settings(request: Request) -> GatewaySettings:
    return (await get_resources(request)).settings


async def get_predictor(request: Request) -> PredictorClient:
    return (await get_resources(request)).predictor


async def get_features(request: Request) -> FeatureServiceClient:
    return (await get_resources(request)).features


async def get_sessions(request: Request) -> sessionmaker[Session]:
    return (await get_resources(request)).sessions


async def get_redis(request: Request) -> aioredis.Redis:
    return (await get_resources(request)).redis


ResourcesDep = Annotated[Resources, Depends(get_resources)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
PredictorDep = Annotated[PredictorClient, Depends(get_predictor)]
FeaturesDep = Annotated[FeatureServiceClient, Depends(get_features)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
