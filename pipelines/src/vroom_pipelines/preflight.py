"""Fail fast, with a clear message, when a server a pipeline needs is not there.

Without these checks a pipeline would do minutes of work before its first write to
Redis or MLflow failed (and MLflow's client retries for minutes on its own).
"""

from __future__ import annotations

import redis

from vroom_common.errors import DependencyUnavailable
from vroom_common.redis_clients import redis_client
from vroom_common.settings import Settings
from vroom_registry import ModelRegistry

_HINT = "is the local stack up? start it with `vroom up --detach`"


def check_redis(settings: Settings) -> None:
    client = redis_client(settings)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise DependencyUnavailable("redis", f"{settings.redis_url}: {exc} ({_HINT})") from exc
    finally:
        client.close()


def model_registry(settings: Settings) -> ModelRegistry:
    """The registry adapter for ``settings.model_name``, its server checked first."""
    models = ModelRegistry(settings.mlflow_uri, settings.model_name)
    try:
        models.check()
    except DependencyUnavailable as exc:
        raise DependencyUnavailable(exc.dependency, f"{exc.message} ({_HINT})") from exc
    return models
