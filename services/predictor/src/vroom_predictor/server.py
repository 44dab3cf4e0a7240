"""Wire the models into ``kserve.ModelServer``.

One server hosts the champion and, served from the registry, the rollout candidate
(``<model>-candidate``) beside it, so a gateway can split and mirror traffic between
two versions without a second process.

- :class:`ReloadingRepository` and :class:`RepositoryExtension`: KServe's model
  repository extension loads by hot reload (``POST /v2/repository/models/{name}/load``,
  gRPC ``RepositoryModelLoad``) instead of KServe's no-op, and unloads by dropping the
  served version (``.../unload``, ``RepositoryModelUnload``) while the model stays
  registered, so the candidate can be loaded again for the next rollout.
- :class:`VersionedDataPlane`: v2 model metadata names each model's loaded version.
- :func:`add_error_handlers`: REST answers a model fault (:class:`InvalidPrediction`)
  with 500 and its message.
- :func:`watch_promotions`: reloads the champion when ``model-promoted`` arrives on the
  models stream (Redis); :func:`model_loaded_publisher` publishes ``model-loaded``
  after each of its swaps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, Final

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from kserve.errors import ModelNotFound
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from pydantic import ValidationError
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from vroom_common import events
from vroom_common.events import ModelLoaded, ModelPromoted, Stream
from vroom_common.redis_clients import async_redis_client
from vroom_common.settings import Settings
from vroom_predictor.loading import LoadedModel, ModelLoadError
from vroom_predictor.model import InvalidPrediction, LoadFailed, OnSwap, ReservationModel

#: The longest a read of the models stream blocks, in milliseconds.
_BLOCK_MS: Final = 5000

log = structlog.get_logger(__name__)

#: ONNX Runtime serves the model; the v2 metadata ``platform`` says so.
PLATFORM = "onnxruntime_onnx"


class ReloadingRepository(ModelRepository):  # type: ignore[misc]
    """The repository of our models: ``load`` is a hot reload, :meth:`unload_version`
    drops the served version and keeps the model.

    KServe's own ``unload`` (stop the model and forget it) is left as it is: the model
    server calls it for every model at shutdown.
    """

    def __init__(self, models: Iterable[ReservationModel]) -> None:
        super().__init__(models_dir="")
        for model in models:
            self.update(model)

    def reservation_model(self, name: str) -> ReservationModel:
        """The model served as ``name``.

        Raises:
            ModelNotFound: we serve no model of that name (REST 404, gRPC NOT_FOUND).
        """
        model = self.get_model(name)
        if not isinstance(model, ReservationModel):
            raise ModelNotFound(name)
        return model

    async def load(self, name: str) -> bool:
        """Hot-reload ``name``; a failure propagates and the previous version serves on."""
        await self.reservation_model(name).reload()
        return True

    async def unload_version(self, name: str) -> str | None:
        """Stop serving ``name`` (not ready until the next load); returns the version dropped."""
        return await self.reservation_model(name).unload()


class RepositoryExtension(ModelRepositoryExtension):  # type: ignore[misc]
    """KServe's repository extension with our load and unload: 404 (not 503) for a model
    we do not serve, the cause of a failed load, and working gRPC load/unload."""

    def __init__(self, repository: ReloadingRepository) -> None:
        super().__init__(model_registry=repository)
        self._repository = repository

    async def load(self, model_name: str) -> dict[str, Any]:
        model = self._repository.reservation_model(model_name)
        try:
            await self._repository.load(model_name)
        except Exception as exc:  # a fetch may fail in many ways; the caller gets why
            serving = model.current.version if model.current else None
            raise LoadFailed(model_name, exc, serving) from exc
        # KServe 0.21's gRPC RepositoryModelLoad reads {"name", "load"} from this return
        # value while the base class returns None (an INTERNAL error); REST ignores it.
        return {"name": model_name, "load": True}

    async def unload(self, model_name: str) -> dict[str, Any]:
        # The base class would forget the model (a later load: 404); and its gRPC
        # RepositoryModelUnload reads {"name", "unload"}, as for load.
        await self._repository.unload_version(model_name)
        return {"name": model_name, "unload": True}


class VersionedDataPlane(DataPlane):  # type: ignore[misc]
    """v2 metadata with the named model's loaded version (``versions``: one entry, or
    none while it serves nothing) and the runtime (``platform``)."""

    def __init__(self, model_registry: ReloadingRepository) -> None:
        super().__init__(model_registry=model_registry)
        self._repository = model_registry

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        # KServe's metadata needs no loaded version: a not-ready model still answers
        # with its tensors (and ModelNotFound for a name we do not serve).
        metadata: dict[str, Any] = await super().model_metadata(model_name)
        metadata["platform"] = PLATFORM
        current = self._repository.reservation_model(model_name).current
        metadata["versions"] = [current.version] if current is not None else []
        return metadata


async def _invalid_prediction(_request: Request, exc: Exception) -> JSONResponse:
    # Already logged by the model, with its name and version: no traceback here.
    return JSONResponse(status_code=HTTPStatus.INTERNAL_SERVER_ERROR, content={"error": str(exc)})


def add_error_handlers(app: FastAPI) -> None:
    """REST 500 ``{"error": message}`` for :class:`InvalidPrediction`, which KServe does
    not know (its catch-all would answer and then re-raise, logging a traceback)."""
    app.add_exception_handler(InvalidPrediction, _invalid_prediction)


def model_loaded_publisher(settings: Settings, redis_url: str, model_name: str) -> OnSwap:
    """An ``on_swap`` callback publishing ``model-loaded`` (best effort: a Redis outage
    is logged, the swap stands)."""

    async def publish_loaded(loaded: LoadedModel) -> None:
        client = async_redis_client(settings, url=redis_url)
        event = ModelLoaded(model_name=model_name, version=loaded.version, run_id=loaded.run_id)
        try:
            await events.publish_async(client, event, settings.stream_maxlen)
        except RedisError as exc:
            log.warning("model-loaded event not published", error=str(exc))
        finally:
            await client.aclose()

    return publish_loaded


async def watch_promotions(model: ReservationModel, settings: Settings, redis_url: str) -> None:
    """Reload ``model`` (the champion) on every ``model-promoted`` for it; reconnects
    while Redis is down.

    Starts after the stream's current tail (the champion at start-up was loaded by
    :meth:`ReservationModel.load_initial`) and resumes where it was after a reconnect,
    so no promotion is missed or replayed.
    """
    model.watcher = asyncio.current_task()  # model.stop() cancels it at shutdown
    last_id: str | None = None
    try:
        await _watch(model, settings, redis_url, last_id)
    except asyncio.CancelledError:
        log.info("promotion watcher stopped")


async def _watch(
    model: ReservationModel, settings: Settings, redis_url: str, last_id: str | None
) -> None:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(RedisError),
        wait=wait_exponential(multiplier=0.5, max=10),
        before_sleep=lambda state: log.warning(
            "promotion watcher lost Redis; retrying",
            error=str(state.outcome.exception() if state.outcome else None),
        ),
    ):
        with attempt:
            client = async_redis_client(settings, url=redis_url, block_s=_BLOCK_MS / 1000)
            try:
                if last_id is None:
                    last_id = await events.stream_tail_async(client, Stream.MODELS)
                log.info("watching promotions", stream=Stream.MODELS.value, after=last_id)
                while True:
                    batches = await client.xread(
                        {Stream.MODELS: last_id}, block=_BLOCK_MS, count=10
                    )
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
