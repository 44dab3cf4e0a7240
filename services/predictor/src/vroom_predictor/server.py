"""Wire the model into ``kserve.ModelServer``.

- :class:`ReloadingRepository`: KServe's model repository extension
  (``POST /v2/repository/models/{name}/load``, gRPC ``RepositoryModelLoad``) runs a
  hot reload instead of KServe's default no-op.
- :class:`VersionedDataPlane`: v2 model metadata names the loaded version.
- :func:`watch_promotions`: reloads when ``model-promoted`` arrives on the models
  stream (Redis), and publishes ``model-loaded`` after each swap.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
import structlog
from kserve.errors import ModelNotFound
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from pydantic import ValidationError
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from vroom_common import events
from vroom_common.events import ModelLoaded, ModelPromoted, Stream
from vroom_predictor.loading import LoadedModel, ModelLoadError
from vroom_predictor.model import OnSwap, ReservationModel

log = structlog.get_logger(__name__)

#: ONNX Runtime serves the model; the v2 metadata ``platform`` says so.
PLATFORM = "onnxruntime_onnx"


class ReloadingRepository(ModelRepository):  # type: ignore[misc]
    """The repository holding our one model; ``load`` is a hot reload."""

    def __init__(self, model: ReservationModel) -> None:
        super().__init__(models_dir="")
        self.model = model
        self.update(model)

    async def load(self, name: str) -> bool:  # noqa: ARG002 - one model; the extension checks the name
        await self.model.reload()  # a failure propagates: KServe reports it, old model serves
        return True


class RepositoryExtension(ModelRepositoryExtension):  # type: ignore[misc]
    """KServe's repository extension, with 404 (not 503) for a model we do not serve and
    a working gRPC ``RepositoryModelLoad``."""

    def __init__(self, repository: ReloadingRepository) -> None:
        super().__init__(model_registry=repository)
        self._repository = repository

    async def load(self, model_name: str) -> dict[str, Any]:
        if self._repository.get_model(model_name) is None:
            raise ModelNotFound(model_name)
        await super().load(model_name)
        # KServe 0.21's gRPC RepositoryModelLoad reads {"name", "load"} from this return
        # value while the base class returns None (an INTERNAL error); REST ignores it.
        return {"name": model_name, "load": True}


class VersionedDataPlane(DataPlane):  # type: ignore[misc]
    """v2 metadata with the served version (``versions``) and the runtime (``platform``)."""

    def __init__(self, model: ReservationModel, model_registry: ModelRepository) -> None:
        super().__init__(model_registry=model_registry)
        self._model = model

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = await super().model_metadata(model_name)
        current = self._model.current
        metadata["platform"] = PLATFORM
        if current is not None:
            metadata["versions"] = [current.version]
        return metadata


def model_loaded_publisher(redis_url: str, model_name: str, maxlen: int) -> OnSwap:
    """An ``on_swap`` callback publishing ``model-loaded`` (best effort: a Redis outage
    is logged, the swap stands)."""

    async def publish_loaded(loaded: LoadedModel) -> None:
        client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        event = ModelLoaded(model_name=model_name, version=loaded.version, run_id=loaded.run_id)
        try:
            await events.publish_async(client, event, maxlen)
        except RedisError as exc:
            log.warning("model-loaded event not published", error=str(exc))
        finally:
            await client.aclose()

    return publish_loaded


async def _stream_tail(client: aioredis.Redis) -> str:
    """The id after which new entries of the models stream will come."""
    if not await client.exists(Stream.MODELS):
        return "0-0"
    info = await client.xinfo_stream(Stream.MODELS)
    last = info["last-generated-id"]
    return last.decode() if isinstance(last, bytes) else str(last)


async def watch_promotions(model: ReservationModel, redis_url: str) -> None:
    """Reload on every ``model-promoted`` for our model; reconnects while Redis is down.

    Starts after the stream's current tail (the champion at start-up was loaded by
    :meth:`ReservationModel.load_initial`) and resumes where it was after a reconnect,
    so no promotion is missed or replayed.
    """
    model.watcher = asyncio.current_task()  # model.stop() cancels it at shutdown
    last_id: str | None = None
    try:
        await _watch(model, redis_url, last_id)
    except asyncio.CancelledError:
        log.info("promotion watcher stopped")


async def _watch(model: ReservationModel, redis_url: str, last_id: str | None) -> None:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(RedisError),
        wait=wait_exponential(multiplier=0.5, max=10),
        before_sleep=lambda state: log.warning(
            "promotion watcher lost Redis; retrying",
            error=str(state.outcome.exception() if state.outcome else None),
        ),
    ):
        with attempt:
            client = aioredis.Redis.from_url(redis_url)
            try:
                if last_id is None:
                    last_id = await _stream_tail(client)
                log.info("watching promotions", stream=Stream.MODELS.value, after=last_id)
                while True:
                    batches = await client.xread({Stream.MODELS: last_id}, block=5000, count=10)
                    for _stream, entries in batches:
                        for entry_id, fields in entries:
                            last_id = entry_id.decode()
                            await _handle(model, fields)
            finally:
                await client.aclose()


async def _handle(model: ReservationModel, fields: dict[bytes, bytes]) -> None:
    try:
        event = events.decode(fields)
    except (ValidationError, ValueError) as exc:
        log.warning("ignoring malformed event on the models stream", error=str(exc))
        return
    if isinstance(event, ModelPromoted) and event.model_name == model.name:
        log.info("model promoted; reloading", version=event.version)
        try:
            await model.reload()
        except ModelLoadError as exc:
            log.error("reload after promotion failed", version=event.version, error=str(exc))
