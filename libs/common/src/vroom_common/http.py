"""What every HTTP service shares: the one mapping of our errors to HTTP responses, and
how a service is served (:func:`serve`).

Each :class:`~vroom_common.errors.VroomError` knows its status; this handler turns it
into ``{"detail": message}`` with that status, the shape FastAPI uses for its own
errors. Services install it with :func:`install_error_handler`.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vroom_common.errors import VroomError
from vroom_common.logs import configure_logging
from vroom_common.settings import Settings, get_settings

log = structlog.get_logger(__name__)


async def vroom_error_response(_request: Request, exc: Exception) -> Response:
    """Every error we raise on purpose -> its status, ``{"detail": message}``."""
    if not isinstance(exc, VroomError):  # registered for VroomError only
        raise exc
    if exc.http_status >= 500:
        log.warning("request failed", error=type(exc).__name__, detail=exc.message)
    return JSONResponse({"detail": exc.message}, status_code=exc.http_status)


def install_error_handler(app: Starlette) -> None:
    """Map every ``VroomError`` raised by ``app``'s routes to its HTTP status."""
    app.add_exception_handler(VroomError, vroom_error_response)


def serve(create_app: Callable[[Settings], Starlette], port: Callable[[Settings], int]) -> None:
    """Run ``create_app(settings)`` with uvicorn on ``settings.host:port(settings)``, the
    settings read from the environment and every log line through our structlog set-up."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=port(settings),
        log_config=None,  # uvicorn's loggers go through configure_logging's handler
        access_log=False,
    )
