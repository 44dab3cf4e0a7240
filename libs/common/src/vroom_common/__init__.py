"""Contracts shared by every vroom-forecast service and pipeline.

One module per kind of fact: ``settings`` (configuration and ports), ``schemas``
(API request/response models), ``events`` (event names, payloads, streams),
``errors`` (error types and their HTTP/gRPC status), ``logging`` (structlog setup).
"""
