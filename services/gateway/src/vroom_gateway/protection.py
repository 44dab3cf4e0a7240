"""Limits that protect the gateway: a request-body cap and read deadline (ASGI
middleware), per-client rate limits shared by every gateway replica through Redis (the
``limits`` library), and a cap on benchmarks running at once.

A rate limiter that cannot reach Redis lets the request through (and logs it): Redis
being down must not turn the API off; the benchmark cap and time budget still bound
what one gateway spends.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import redis.asyncio as aioredis
import structlog
from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vroom_common.errors import PayloadTooLarge, RateLimited, RequestTimeout
from vroom_common.http import vroom_error_response
from vroom_common.observability import header
from vroom_gateway.security import Caller, Principal
from vroom_gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

#: Rate-limit keys live under this prefix in Redis.
KEY_PREFIX: Final = "vroom:ratelimit"


class BodyLimitMiddleware:
    """Reads each request body whole, up to ``max_bytes`` and within ``timeout_s``, before
    the app sees it: a larger body is a 413 naming the limit (refused from its
    Content-Length when it declares one, before anything is read), a client too slow to
    send it a 408; the app then gets the body as one message. (FastAPI's own
    ``max_body_size`` answers in plain text without the limit, outside CORS, and has no
    deadline; uvicorn has no body deadline either.)"""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_bytes:
                raise self._too_large()
            body = await self._read(receive)
        except (PayloadTooLarge, RequestTimeout) as error:
            response = await vroom_error_response(StarletteRequest(scope), error)
            response.headers["Connection"] = "close"  # the rest of the body is not read
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later reads wait for the disconnect (SSE)

        await self.app(scope, replay, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body: larger than the limit of {self.max_bytes} bytes")

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        break
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeout(
                f"request body: not received within {self.timeout_s:g} s"
            ) from None
        return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


class RateLimits:
    """Moving-window limits per client, counted in Redis so all replicas share them."""

    def __init__(self, settings: GatewaySettings, client: aioredis.Redis) -> None:
        storage = RedisStorage(
            settings.redis_url.replace("redis", "async+redis", 1),
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            wrap_exceptions=True,
            # One pool with the gateway's other Redis calls (its timeouts apply).
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self.costly = parse_many(settings.rate_limit_costly) if settings.rate_limit_costly else []
        self.benchmark = (
            parse_many(settings.rate_limit_benchmark) if settings.rate_limit_benchmark else []
        )

    async def hit(self, scope: str, items: list[RateLimitItem], client_id: str) -> None:
        """Count one request of ``client_id`` against ``items``; 429 with ``Retry-After``
        when any is exhausted."""
        for item in items:
            try:
                allowed = await self._limiter.hit(item, scope, client_id)
                if allowed:
                    continue
                stats = await self._limiter.get_window_stats(item, scope, client_id)
            except StorageError as error:
                log.warning("rate limit not checked: redis unavailable", error=str(error))
                return
            retry_after = math.ceil(stats.reset_time - time.time())
            raise RateLimited(
                f"rate limit of {item} for {scope} exceeded; retry in {max(1, retry_after)} s",
                retry_after_s=retry_after,
            )


def client_id(request: Request, principal: Principal) -> str:
    """Who a limit counts: the authenticated caller, else the client address (set from
    X-Forwarded-For by the server when the peer is a trusted proxy)."""
    if principal.authenticated:
        return principal.id
    return f"ip:{request.client.host if request.client else 'unknown'}"


def rate_limited(scope: str, benchmark: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency: authenticate, then count the request in ``scope``'s limit."""

    async def dependency(request: Request, principal: Caller) -> Principal:
        limits: RateLimits = request.app.state.resources.rate_limits
        items = limits.benchmark if benchmark else limits.costly
        if items:
            await limits.hit(scope, items, client_id(request, principal))
        return principal

    return dependency


class BenchmarkSlots:
    """At most ``size`` benchmarks at once in this gateway; another one gets a 429 (it
    does not queue: a queue of benchmarks is a way to keep the CPUs busy)."""

    def __init__(self, size: int, budget_s: float) -> None:
        self._free = size
        self._budget_s = budget_s

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self._free <= 0:
            raise RateLimited(
                "a benchmark is already running on this gateway; retry when it ends",
                retry_after_s=math.ceil(self._budget_s),
            )
        self._free -= 1
        try:
            yield
        finally:
            self._free += 1
