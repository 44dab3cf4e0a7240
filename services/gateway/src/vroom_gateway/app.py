"""The app factory: routers, the one error handler, observability, and the lifespan that
opens what the routes share (one gRPC channel to the predictor, one pooled HTTP client
of the feature service, the database's session factory, one Redis pool) and closes it
at shutdown. Nothing is built at import time.

Around the routes, outermost first: CORS (so every answer a browser gets, errors
included, carries its headers), request ids and metrics, the body's size cap and read
deadline. Authentication and rate limits are dependencies of the routes that need them
(``security.py``, ``protection.py``); docs/security.md describes the whole policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import structlog
from fastapi import Depends, FastAPI
from fastapi.routing import iter_route_contexts
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vroom_common.http import install_error_handler
from vroom_common.observability import REQUEST_ID_HEADER, install_observability
from vroom_common.redis_clients import async_redis_client
from vroom_common.tracing import instrument_app, instrument_grpc_client
from vroom_db.migrate import migrate
from vroom_db.session import make_engine, make_session_factory
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.clients.predictor import PredictorClient
from vroom_gateway.deps import Resources
from vroom_gateway.materializer_metrics import MaterializerGauges
from vroom_gateway.metrics import ServedVersion, Stages
from vroom_gateway.prediction_log import PredictionLog
from vroom_gateway.protection import BenchmarkSlots, BodyLimitMiddleware, RateLimits
from vroom_gateway.routes import (
    benchmark,
    events,
    health,
    model,
    monitoring,
    pipelines,
    predict,
    rollout,
    vehicles,
)
from vroom_gateway.runners import make_runner
from vroom_gateway.security import Authenticator, authenticate
from vroom_gateway.settings import GatewaySettings
from vroom_gateway.traffic import Traffic
from vroom_registry import candidate_name

log = structlog.get_logger(__name__)

#: Redis connect/read bounds: a request that publishes an event must not hang on a
#: Redis that is down (SSE reads block longer, with their own per-call timeout).


def create_app(
    settings: GatewaySettings,
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

    # Built before serving, so a bad key file stops the start with its reason.
    authenticator = Authenticator(settings)
    instrument_grpc_client()  # before the lifespan opens the predictors' channels

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
        migrate(engine)
        redis_client = async_redis_client(settings)
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
        backlog = MaterializerGauges(redis_client, metrics)
        backlog.start()
        prediction_log = PredictionLog(settings, redis_client, metrics)
        prediction_log.start()
        app.state.resources = Resources(
            settings=settings,
            predictor=predictor,
            features=features,
            sessions=make_session_factory(engine),
            redis=redis_client,
            metrics=metrics,
            served_version=served_version,
            stages=Stages(metrics),
            runner=runner,
            traffic=traffic,
            prediction_log=prediction_log,
            authenticator=authenticator,
            rate_limits=RateLimits(settings, redis_client),
            benchmark_slots=BenchmarkSlots(
                settings.benchmark_max_concurrent, settings.benchmark_budget_s
            ),
        )
        log.info(
            "gateway started",
            predictor=predictor.target,
            feature_service=features.base_url,
            model_name=settings.model_name,
            pipeline_runner=runner.name,
            auth="on" if authenticator.enabled else "off",
            cors_origins=settings.cors_origins,
        )
        try:
            yield
        finally:
            await runner.aclose()
            await backlog.stop()
            await prediction_log.stop()
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
    app.add_exception_handler(405, method_not_allowed)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.http_body_timeout_s,
    )
    metrics = install_observability(app, "gateway")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=settings.cors_allow_credentials,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
        max_age=600,
    )
    app.include_router(health.router)  # open always: probes and load balancers call it
    reads = [Depends(authenticate)] if settings.auth_reads else []
    for module in (predict, benchmark, vehicles, model, pipelines, events, rollout, monitoring):
        app.include_router(module.router, dependencies=reads)
    instrument_app(app)
    return app


#: Request headers a cross-origin page may send (besides the CORS-safelisted ones).
CORS_REQUEST_HEADERS: Final = [
    "Authorization",
    "Content-Type",
    "X-API-Key",
    REQUEST_ID_HEADER,
    "Last-Event-ID",
    # W3C trace context: a traced page's request joins its trace (vroom_common.tracing).
    "traceparent",
    "tracestate",
]
#: Response headers a cross-origin page may read.
CORS_EXPOSED_HEADERS: Final = [REQUEST_ID_HEADER, "Retry-After", "WWW-Authenticate"]

#: The order methods are listed in ``Allow``.
_METHOD_ORDER: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def method_not_allowed(request: Request, _exc: Exception) -> Response:
    """405 with ``Allow`` naming every method the path has (Starlette's own lists only
    the first route matching the path, e.g. GET but not POST for ``/vehicles``). A CORS
    preflight never gets here: the CORS middleware answers it."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(route.methods or ())
    allowed = sorted(methods, key=lambda m: (*_METHOD_ORDER, m).index(m))
    return JSONResponse(
        {
            "detail": f"method {request.method} is not allowed on {request.url.path}; "
            f"allowed: {', '.join(allowed)}"
        },
        status_code=405,
        headers={"Allow": ", ".join(allowed)},
    )
