"""The app factory: routers, the one error handler, and the lifespan that opens the stores.

Nothing is built at import time. :func:`create_app` returns an app whose lifespan
opens the Feast store and the Redis client once, loads the offline store, and closes
the clients at shutdown. Handlers that call Feast or Redis are plain ``def``
functions, which FastAPI runs in its thread pool, so a slow store never blocks the
event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from vroom_common.http import install_error_handler
from vroom_common.observability import install_observability
from vroom_common.settings import Settings
from vroom_common.tracing import instrument_app
from vroom_feature_service.offline import DEFAULT_CHECK_INTERVAL_S
from vroom_feature_service.routes import compute, health, offline, online, stores
from vroom_feature_service.state import ServiceState

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings, *, offline_check_interval_s: float = DEFAULT_CHECK_INTERVAL_S
) -> FastAPI:
    """The feature service for ``settings`` (Redis, Feast registry, offline store path).

    Args:
        settings: Where the stores are.
        offline_check_interval_s: Least time between two looks at the offline store
            file for changes.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await run_in_threadpool(ServiceState.open, settings, offline_check_interval_s)
        app.state.service = state
        log.info(
            "feature service started",
            redis_url=state.feast.redis_url,
            registry=str(settings.feast_registry_path),
            offline_store=str(settings.offline_store_path),
        )
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(
        title="vroom-forecast feature service",
        summary="On-the-fly, online (Feast + Redis) and offline (Parquet) features.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handler(app)
    install_observability(app, "features")
    for module in (compute, online, offline, stores, health):
        app.include_router(module.router)
    instrument_app(app)
    return app
