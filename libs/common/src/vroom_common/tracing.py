"""Distributed tracing (OpenTelemetry), configured by the standard ``OTEL_*`` variables.

Off unless ``OTEL_TRACES_EXPORTER`` names an exporter, so the hot path pays nothing by
default: no instrumentation is installed and our own spans go to OpenTelemetry's no-op
tracer. With ``otlp`` the spans are batched to ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``
(``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``: ``http/protobuf``, the default, or ``grpc``);
with ``console`` each span is one JSON line on the service's stdout, which is its log
locally, so a trace can be followed without a collector. ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and ``OTEL_BSP_*`` are honoured
as the SDK defines them; ``OTEL_SDK_DISABLED=true`` turns everything off.

One trace per request: the gateway continues a client's W3C ``traceparent`` (or starts
one), passes it to the feature service in HTTP headers and to the predictor in gRPC
metadata; each service's spans join it (docs/observability.md).
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Final

import structlog
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import (
    GrpcAioInstrumentorClient,
    GrpcAioInstrumentorServer,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from vroom_common.errors import InvalidInput

if TYPE_CHECKING:
    import aiohttp
    from fastapi import FastAPI

#: Requests that are never traced: probes and scrapes would drown the real traffic.
UNTRACED_PATHS: Final = "health,ready,live,metrics"

_state: dict[str, bool] = {"enabled": False}
#: Our spans' tracer: a proxy that follows the provider ``configure_tracing`` installs.
_TRACER: Final = trace.get_tracer("vroom")
#: What :func:`span` gives while tracing is off (reusable: it holds no state).
_OFF: Final = nullcontext(trace.INVALID_SPAN)


def _exporter_names() -> list[str]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    return [name.strip() for name in raw.split(",") if name.strip() not in ("", "none")]


def _otlp_exporter() -> SpanExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "http/protobuf":
        return OTLPSpanExporter()
    if protocol == "grpc":
        return GrpcSpanExporter()
    raise InvalidInput(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (http/protobuf or grpc)"
    )


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        return _otlp_exporter()
    if name == "console":
        # One line per span (the default is indented JSON): log-shaped, greppable.
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    raise InvalidInput(f"OTEL_TRACES_EXPORTER: {name!r} is not an exporter (otlp, console, none)")


def configure_tracing(service: str) -> bool:
    """Install the tracer provider for ``service`` when ``OTEL_TRACES_EXPORTER`` asks for
    one; returns whether tracing is on. Call once, before building the app and clients.

    Raises:
        InvalidInput: An unknown exporter or OTLP protocol (a typo must not silently
            turn tracing off).
    """
    names = _exporter_names()
    if not names:
        _state["enabled"] = False
        return False
    exporters = [_exporter(name) for name in names]
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _state["enabled"] = True
    structlog.get_logger("vroom.tracing").info(
        "tracing on", service=resource.attributes.get(SERVICE_NAME), exporters=names
    )
    return True


def tracing_enabled() -> bool:
    return _state["enabled"]


def shutdown_tracing() -> None:
    """Flush the spans still batched (a stopping service would lose its last ones)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if _state["enabled"] and callable(shutdown):
        shutdown()


def instrument_app(app: FastAPI) -> None:
    """Trace every request to ``app`` (but probes and scrapes), continuing the caller's
    ``traceparent``."""
    if not tracing_enabled():
        return
    # Imported here: FastAPI (and aiohttp below) belong to the components that serve
    # (call) over them; the materializer has neither.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: PLC0415

    # No span per ASGI message ("http send", "http receive"): bodies here are small,
    # and those spans were about 40 % of a prediction's spans (benchmarks/tracing.py).
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_PATHS, exclude_spans=["receive", "send"]
    )


def http_trace_configs() -> list[aiohttp.TraceConfig]:
    """``trace_configs`` of an ``aiohttp.ClientSession`` whose calls carry the current
    trace to the service called (a client span per call); none while tracing is off."""
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config  # noqa: PLC0415

    return [create_trace_config()]


def instrument_grpc_client() -> None:
    """Every ``grpc.aio`` channel opened from now on sends the trace in its metadata."""
    if not tracing_enabled():
        return
    GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]


def instrument_grpc_server() -> None:
    """Every ``grpc.aio`` server made from now on (KServe's) continues the caller's trace."""
    if not tracing_enabled():
        return
    GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]


def span(name: str, **attributes: Any) -> AbstractContextManager[trace.Span]:
    """A span of our own around a step; while tracing is off, a shared do-nothing
    context (cheaper than OpenTelemetry's no-op span: this is on every request)."""
    if not _state["enabled"]:
        return _OFF
    return _TRACER.start_as_current_span(name, attributes=attributes)
