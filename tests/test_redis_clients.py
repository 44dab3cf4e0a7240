"""The one Redis client factory: its timeouts, retries and blocking reads, for real."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from vroom_common import events, redis_clients
from vroom_common.events import Stream
from vroom_common.settings import Settings


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def _time_to_fail(settings: Settings, url: str) -> float:
    client = redis_clients.redis_client(settings, url=url)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    client.close()
    return time.monotonic() - started


def test_a_silent_redis_fails_after_the_timeout_and_the_retries(
    stack_settings: Settings, silent_server: str
) -> None:
    once = _time_to_fail(
        stack_settings.with_overrides(redis_timeout_s=0.3, redis_retries=0), silent_server
    )
    thrice = _time_to_fail(
        stack_settings.with_overrides(redis_timeout_s=0.3, redis_retries=2), silent_server
    )
    print(f"silent Redis: {once:.2f} s with no retry, {thrice:.2f} s with 2")
    assert 0.3 <= once < 5.0  # the command timeout, not the OS's
    assert thrice > 2 * once  # each retry waits the timeout again
    assert thrice < 15.0


@pytest.mark.usefixtures("redis_client")  # an empty database
def test_a_blocking_read_outlasts_the_command_timeout(stack_settings: Settings) -> None:
    settings = stack_settings.with_overrides(redis_timeout_s=0.3, redis_retries=0)
    blocking = redis_clients.redis_client(settings, block_s=1.0)
    try:
        assert blocking.xread({"vroom:test:idle": "$"}, block=800) == []
    finally:
        blocking.close()
    plain = redis_clients.redis_client(settings)
    try:
        with pytest.raises(redis.TimeoutError):
            plain.xread({"vroom:test:idle": "$"}, block=800)
    finally:
        plain.close()


@pytest.mark.usefixtures("redis_client")  # an empty database
def test_the_stream_tail_is_past_deleted_entries(stack_settings: Settings) -> None:
    async def tails() -> tuple[str, str, str]:
        client = redis_clients.async_redis_client(stack_settings)
        try:
            empty = await events.stream_tail_async(client, Stream.MODELS)
            await client.xadd(Stream.MODELS, {"k": "1"})
            newest = (await client.xadd(Stream.MODELS, {"k": "2"})).decode()
            await client.xdel(Stream.MODELS, newest)
            return empty, newest, await events.stream_tail_async(client, Stream.MODELS)
        finally:
            await client.aclose()

    empty, deleted, tail = asyncio.run(tails())
    assert empty == "0-0"
    assert tail == deleted  # a reader starting here never gets the deleted entry again
