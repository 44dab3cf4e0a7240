"""The one mapping of our errors to HTTP responses, shared by every HTTP service.

Each :class:`~vroom_common.errors.VroomError` knows its status; this handler turns it
into ``{"detail": message}`` with that status, the shape FastAPI uses for its own
errors. Services install it with :func:`install_error_handler`.
"""

from __future__ import annotations

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vroom_common.errors import VroomError

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
