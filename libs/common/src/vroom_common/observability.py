"""Request ids, request logs' context and Prometheus metrics for every HTTP service.

One pure-ASGI middleware (cheaper than Starlette's ``BaseHTTPMiddleware``) per app:

- takes the caller's ``X-Request-ID`` (or makes one), binds it to structlog's context
  for every log line of the request, and sets it on the response;
- counts requests and observes their latency per route template, method and status.

Clients of other services read :func:`current_request_id` to pass the id on (an HTTP
header to the feature service, gRPC metadata to the predictor).
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from typing import Final

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The request-latency histogram every HTTP service exports.
REQUEST_METRIC: Final = "http_request_duration_seconds"
#: The HTTP header of the request id, in and out.
REQUEST_ID_HEADER: Final = "X-Request-ID"
#: The same id as gRPC metadata (keys are lower case there).
REQUEST_ID_METADATA: Final = REQUEST_ID_HEADER.lower()

#: A caller's id is kept when it is this safe: printable, bounded, no separators.
_VALID_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

#: Latency buckets (seconds): sub-millisecond to the benchmark endpoints' 30 s bound.
_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_request_started: ContextVar[float] = ContextVar("request_started", default=0.0)


def current_request_id() -> str | None:
    """The id of the request being handled (``None`` outside a request)."""
    return _request_id.get()


def request_started() -> float:
    """``time.perf_counter()`` when the request being handled arrived (0 outside one)."""
    return _request_started.get()


class HttpMetrics:
    """The request metrics of one service, in a registry of its own (tests build many
    apps in one process; a global registry would refuse the second)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests handled, by route template, method and status.",
            ["service", "route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            REQUEST_METRIC,
            "Time from request to the end of the response, by route template and method.",
            ["service", "route", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.service = service

    def gauge(self, name: str, documentation: str, labels: list[str]) -> Gauge:
        """A service-specific gauge in the same registry (e.g. the model version served)."""
        return Gauge(name, documentation, labels, registry=self.registry)

    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        """A service-specific counter in the same registry (``name`` without ``_total``)."""
        return Counter(name, documentation, labels, registry=self.registry)

    def histogram(self, name: str, documentation: str, labels: list[str]) -> Histogram:
        """A service-specific latency histogram (seconds) in the same registry."""
        return Histogram(name, documentation, labels, buckets=_BUCKETS, registry=self.registry)

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/vehicles/{vehicle_id}``), never the raw path
    (ids in paths would make a label per vehicle); ``unmatched`` for 404s."""
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
    return "unmatched"


class RequestContextMiddleware:
    """Request id + structlog context + metrics around every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, REQUEST_ID_HEADER.lower().encode())
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else None
        request_id = request_id or uuid.uuid4().hex
        token = _request_id.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        started = time.perf_counter()
        started_token = _request_started.set(started)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            service = self.metrics.service
            self.metrics.requests.labels(service, route, method, str(status)).inc()
            self.metrics.latency.labels(service, route, method).observe(
                time.perf_counter() - started
            )
            structlog.contextvars.unbind_contextvars("request_id")
            _request_started.reset(started_token)
            _request_id.reset(token)


def header(scope: Scope, name: bytes) -> str | None:
    """A request header of an ASGI scope (``name`` in lower case), or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def install_observability(app: Starlette, service: str) -> HttpMetrics:
    """Add the middleware and ``GET /metrics`` (Prometheus text format) to ``app``."""
    metrics = HttpMetrics(service)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    async def prometheus_metrics(_request: Request) -> Response:
        return metrics.exposition()

    app.add_route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False)
    return metrics
