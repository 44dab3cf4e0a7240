"""Structured logging: structlog, JSON in containers (or when asked), console on a TTY."""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

import structlog
from opentelemetry import trace


def _keep(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    return event


def add_trace_ids(
    _logger: object, _name: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """The current trace's and span's ids on a line logged inside one (vroom_common.tracing)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "INFO"
) -> None:
    """Route structlog and stdlib logging through one renderer.

    ``auto`` renders JSON unless stderr is a terminal, so containers and log files get
    one JSON object per line while a developer at a terminal gets readable lines.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info
            if use_json
            else structlog.processors.UnicodeDecoder(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # Resolve sys.stderr per logger, not once: test runners swap the stream.
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    # Records from stdlib loggers (uvicorn, KServe...) get the same processors; their
    # tracebacks are rendered into the line (JSON cannot hold a traceback object).
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if use_json else _keep,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # MLflow configures its own handler when imported and reads its level from the
    # environment, and draws download progress bars; ours is the one log stream.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Third-party chatter that drowns our own lines at INFO.
    for noisy in ("alembic", "urllib3", "httpx", "httpcore", "mlflow", "feast", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
