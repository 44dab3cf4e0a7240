"""Free loopback ports for the servers a test (or a benchmark) starts."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from vroom_cli.stack.settings import StackSettings


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free right now (held together so they are distinct)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def private_stack_settings(state_dir: Path, **settings: Any) -> StackSettings:
    """A whole local stack of its own: ``state_dir``, loopback, a free port per service,
    and every URL explicit so ``VROOM_*`` URLs in the environment cannot redirect it;
    ``settings`` on top."""
    redis, mlflow, gateway, rest, grpc, features = free_ports(6)
    return StackSettings(
        state_dir=state_dir,
        host="127.0.0.1",
        redis_port=redis,
        mlflow_port=mlflow,
        gateway_port=gateway,
        predictor_http_port=rest,
        predictor_grpc_port=grpc,
        feature_service_port=features,
        redis_url=f"redis://127.0.0.1:{redis}/0",
        mlflow_uri=f"http://127.0.0.1:{mlflow}",
        predictor_url=f"http://127.0.0.1:{rest}",
        predictor_grpc_target=f"127.0.0.1:{grpc}",
        feature_service_url=f"http://127.0.0.1:{features}",
        **settings,
    )
