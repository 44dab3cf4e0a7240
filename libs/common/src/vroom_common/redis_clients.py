"""Every Redis client of the system is made here: one set of timeouts and one retry
policy, from settings (``VROOM_REDIS_CONNECT_TIMEOUT_S``, ``VROOM_REDIS_TIMEOUT_S``,
``VROOM_REDIS_RETRIES``).

A command that cannot reach Redis is retried ``redis_retries`` times after a short
pause, then fails with ``redis.RedisError``; the caller decides what an outage means
(a 503, a logged best-effort event, a reconnect loop). A reader that blocks on a stream
passes ``block_s``, its longest wait, so the socket outlasts the blocking read.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from vroom_common.settings import Settings

#: How often an idle pooled connection is checked before use (seconds).
HEALTH_CHECK_S = 30
#: The pause before a retry grows from this ...
_BACKOFF_BASE_S = 0.05
#: ... to at most this.
_BACKOFF_CAP_S = 0.5


def _options(
    settings: Settings, block_s: float, retry: type[Retry] | type[AsyncRetry]
) -> dict[str, Any]:
    backoff = ExponentialBackoff(cap=_BACKOFF_CAP_S, base=_BACKOFF_BASE_S)
    return {
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_timeout": settings.redis_timeout_s + block_s,
        "health_check_interval": HEALTH_CHECK_S,
        "retry": retry(backoff, settings.redis_retries),
    }


def redis_client(
    settings: Settings, *, url: str | None = None, block_s: float = 0.0
) -> redis.Redis:
    """A client of ``url`` (default ``settings.redis_url``); bytes responses."""
    return redis.Redis.from_url(url or settings.redis_url, **_options(settings, block_s, Retry))


def async_redis_client(
    settings: Settings, *, url: str | None = None, block_s: float = 0.0
) -> aioredis.Redis:
    """The asyncio twin of :func:`redis_client`."""
    return aioredis.Redis.from_url(
        url or settings.redis_url, **_options(settings, block_s, AsyncRetry)
    )
