"""Fail fast, with a clear message, when a server a pipeline needs is not there.

Without these checks a pipeline would do minutes of work before its first write to
Redis or MLflow failed (and MLflow's client retries for minutes on its own).
"""

from __future__ import annotations

import httpx
import redis

from vroom_common.errors import DependencyUnavailable
from vroom_common.redis_clients import redis_client
from vroom_common.settings import Settings

_HINT = "is the local stack up? start it with `vroom up --detach`"


def check_redis(settings: Settings) -> None:
    client = redis_client(settings)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise DependencyUnavailable("redis", f"{settings.redis_url}: {exc} ({_HINT})") from exc
    finally:
        client.close()


def check_mlflow(settings: Settings) -> None:
    try:
        httpx.get(f"{settings.mlflow_uri}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise DependencyUnavailable("mlflow", f"{settings.mlflow_uri}: {exc} ({_HINT})") from exc
