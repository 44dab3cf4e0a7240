"""The app factory: routers, the one error handler, and the lifespan that opens the
clients (one gRPC channel to the predictor, one pooled HTTP client of the feature
service) and closes them at shutdown. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from vroom_common.http import install_error_handler
from vroom_common.settings import Settings
from vroom_gateway.clients import features as features_client
from vroom_gateway.clients import predictor as predictor_client
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.clients.predictor import PredictorClient
from vroom_gateway.routes import health, model, predict

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings,
    *,
    predictor_timeout_s: float = predictor_client.DEFAULT_TIMEOUT_S,
    features_timeout_s: float = features_client.DEFAULT_TIMEOUT_S,
) -> FastAPI:
    """The gateway for ``settings``.

    Args:
        settings: Where the predictor (``predictor_grpc_target``), the feature
            service (``feature_service_url``) and MLflow are.
        predictor_timeout_s: Deadline of each gRPC call to the predictor.
        features_timeout_s: Timeout of each feature-service request.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor = PredictorClient(
            settings.predictor_grpc_target,
            settings.model_name,
            timeout_s=predictor_timeout_s,
        )
        features = FeatureServiceClient(settings.feature_service_url, timeout_s=features_timeout_s)
        await predictor.open()
        await features.open()
        app.state.settings = settings
        app.state.predictor = predictor
        app.state.features = features
        log.info(
            "gateway started",
            predictor=predictor.target,
            feature_service=features.base_url,
            model_name=settings.model_name,
        )
        try:
            yield
        finally:
            await features.close()
            await predictor.close()

    app = FastAPI(
        title="vroom-forecast gateway",
        summary="Reservation forecasts for car-sharing listings.",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
    )
    install_error_handler(app)
    for module in (health, predict, model):
        app.include_router(module.router)
    return app
