"""The app factory: routers, the one error handler, observability, and the lifespan that
opens what the routes share (one gRPC channel to the predictor, one pooled HTTP client
of the feature service, the database's session factory, one Redis pool) and closes it
at shutdown. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
import structlog
from fastapi import FastAPI

from vroom_common.http import install_error_handler
from vroom_common.observability import install_observability
from vroom_common.registry import candidate_name
from vroom_common.settings import Settings
from vroom_db.session import create_schema, make_engine, make_session_factory
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.clients.predictor import PredictorClient
from vroom_gateway.deps import Resources
from vroom_gateway.metrics import ServedVersion
from vroom_gateway.routes import (
    benchmark,
    events,
    health,
    model,
    pipelines,
    predict,
    rollout,
    vehicles,
)
from vroom_gateway.runners import make_runner
from vroom_gateway.traffic import Traffic

log = structlog.get_logger(__name__)

#: Redis connect/read bounds: a request that publishes an event must not hang on a
#: Redis that is down (SSE reads block longer, with their own per-call timeout).
REDIS_SOCKET_TIMEOUT_S = 2.0


def create_app(
    settings: Settings,
    *,
    predictor_timeout_s: float | None = None,
    features_timeout_s: float | None = None,
) -> FastAPI:
    """The gateway for ``settings``.

    Args:
        settings: Where the predictor (``predictor_grpc_target``), the feature service
            (``feature_service_url``), MLflow, Redis and the database are.
        predictor_timeout_s: Deadline of each gRPC call to the predictor
            (default ``settings.request_timeout_s``).
        features_timeout_s: Timeout of each feature-service request (same default).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor = PredictorClient(
            settings.predictor_grpc_target,
            settings.model_name,
            timeout_s=predictor_timeout_s or settings.request_timeout_s,
        )
        features = FeatureServiceClient(
            settings.feature_service_url, timeout_s=features_timeout_s or settings.request_timeout_s
        )
        engine = make_engine(settings.database_url)
        create_schema(engine)
        redis_client = aioredis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
            socket_timeout=REDIS_SOCKET_TIMEOUT_S,
            health_check_interval=30,
        )
        candidate = PredictorClient(
            settings.candidate_predictor_grpc_target,
            candidate_name(settings.model_name),
            timeout_s=settings.rollout_candidate_timeout_s,
        )
        await predictor.open()
        await candidate.open()
        await features.open()
        runner = make_runner(settings)
        served_version = ServedVersion(metrics, settings.model_name)
        traffic = Traffic(
            settings,
            champion=predictor,
            candidate=candidate,
            client=redis_client,
            metrics=metrics,
            served_version=served_version,
        )
        await traffic.start()
        app.state.resources = Resources(
            settings=settings,
            predictor=predictor,
            features=features,
            sessions=make_session_factory(engine),
            redis=redis_client,
            metrics=metrics,
            served_version=served_version,
            runner=runner,
            traffic=traffic,
        )
        log.info(
            "gateway started",
            predictor=predictor.target,
            feature_service=features.base_url,
            model_name=settings.model_name,
            pipeline_runner=runner.name,
        )
        try:
            yield
        finally:
            await runner.aclose()
            await traffic.stop()
            await features.close()
            await candidate.close()
            await predictor.close()
            await redis_client.aclose()
            engine.dispose()

    app = FastAPI(
        title="vroom-forecast gateway",
        summary="Reservation forecasts for car-sharing listings.",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
    )
    install_error_handler(app)
    metrics = install_observability(app, "gateway")
    for module in (health, predict, benchmark, vehicles, model, pipelines, events, rollout):
        app.include_router(module.router)
    return app
