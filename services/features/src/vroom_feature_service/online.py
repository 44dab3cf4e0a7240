"""The Feast side: online lookups (Redis), the online store's facts, the registry's view.

Lookups read Feast's keys on a pooled asyncio client of our own
(:class:`vroom_features.online.OnlineReader`), on the event loop: one round trip, no
thread-pool hop. Our clients do not retry and have short timeouts, so a down Redis is
a 503 in milliseconds (Feast's own client would spend seconds in redis-py's default
retries first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import structlog
from feast import FeatureStore, FeatureView
from feast.errors import FeatureViewNotFoundException

from vroom_common.errors import DependencyUnavailable
from vroom_common.settings import Settings
from vroom_features import ENTITY_KEY, FEATURE_NAMES, LABEL
from vroom_features.definitions import FEATURE_VIEW_NAME
from vroom_features.online import OnlineReader, delete_online
from vroom_features.schemas import (
    FeatureViewInfo,
    OnlineDeletion,
    OnlineFeatures,
    OnlineStoreInfo,
    VehicleFeatureVector,
)

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

#: Keys fetched per SCAN round trip when counting the project's keys.
_SCAN_BATCH: Final = 1000


def public_url(url: str) -> str:
    """``url`` without its password (safe to show)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    netloc = f"{user}{host}:{parts.port}" if parts.port else f"{user}{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class NotRegistered(DependencyUnavailable):
    """The feature view is not in the Feast registry (materialization has not run)."""

    def __init__(self) -> None:
        super().__init__(
            "feast registry",
            f"feature view {FEATURE_VIEW_NAME!r} is not registered (run `vroom materialize`)",
        )


class FeastBackend:
    """The Feast store and Redis clients of our own, opened once per process.

    :meth:`lookup` is a coroutine for the event loop; every other method blocks (Feast
    and redis-py are synchronous): call them from a thread pool.
    """

    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        client: redis.Redis,
        async_client: aioredis.Redis,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.reader = OnlineReader(store, async_client)
        self.redis_url = public_url(settings.redis_url)
        # Feature views are never removed: once seen registered, lookups skip the check.
        self._registered = False

    @contextmanager
    def _redis_errors(self) -> Iterator[None]:
        """Turn redis-py's connection errors into :class:`DependencyUnavailable`."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise DependencyUnavailable("redis", f"{self.redis_url}: {exc}") from exc

    def ping(self) -> None:
        """Return when Redis answers; :class:`DependencyUnavailable` otherwise."""
        with self._redis_errors():
            self.client.ping()

    def feature_view(self, allow_cache: bool = False) -> FeatureView:
        """The registered feature view; :class:`NotRegistered` when it is not there."""
        try:
            return self.store.get_feature_view(FEATURE_VIEW_NAME, allow_registry_cache=allow_cache)
        except FeatureViewNotFoundException as exc:
            raise NotRegistered from exc

    def _with_registry(self, call: Callable[[], _T]) -> _T:
        """``call()``, once more after a registry refresh if Feast's cached registry
        predates the feature view (materialization registered it after our last read)."""
        try:
            return call()
        except FeatureViewNotFoundException:
            self.store.refresh_registry()  # type: ignore[no-untyped-call]
            try:
                return call()
            except FeatureViewNotFoundException as exc:
                raise NotRegistered from exc

    async def lookup(self, vehicle_ids: Sequence[int]) -> OnlineFeatures:
        """Online features of ``vehicle_ids`` (each once, in the order first asked).

        Vehicles without every feature in the store are listed in ``missing``; ``found``
        holds no missing value. Feast's own read answers the same (it does not apply
        the feature view's TTL either).
        """
        ids = list(dict.fromkeys(vehicle_ids))
        if not self._registered:
            await asyncio.to_thread(self._with_registry, self.feature_view)
            self._registered = True
        with self._redis_errors():
            rows = await self.reader.read(ids)
        found: list[VehicleFeatureVector] = []
        missing: list[int] = []
        for vehicle_id, values in zip(ids, rows, strict=True):
            if values is None:
                missing.append(vehicle_id)
            else:
                found.append(vector(vehicle_id, values))
        return OnlineFeatures(found=found, missing=missing)

    def delete(self, vehicle_id: int) -> OnlineDeletion:
        """Remove one vehicle's features from the online store (idempotent)."""
        with self._redis_errors():
            held = delete_online(self.store, self.client, [vehicle_id])
        return OnlineDeletion(vehicle_id=vehicle_id, deleted=held > 0)

    def keys(self) -> int:
        """Redis keys of this Feast project: Feast suffixes every key with the project."""
        pattern = "*" + _glob_escape(self.store.project)
        with self._redis_errors():
            return sum(1 for _ in self.client.scan_iter(match=pattern, count=_SCAN_BATCH))

    def online_info(self) -> OnlineStoreInfo:
        """Reachability, key count and memory of the online store; never raises for a
        down Redis (the answer says it is down)."""
        try:
            with self._redis_errors():
                memory: dict[str, Any] = self.client.info("memory")  # type: ignore[assignment]
            keys = self.keys()
        except DependencyUnavailable as exc:
            return OnlineStoreInfo(
                available=False,
                redis_url=self.redis_url,
                keys=None,
                used_memory_human=None,
                error=exc.message,
            )
        return OnlineStoreInfo(
            available=True,
            redis_url=self.redis_url,
            keys=keys,
            used_memory_human=str(memory.get("used_memory_human")),
        )

    def feature_view_info(self) -> FeatureViewInfo | None:
        """The feature view's facts from the registry; ``None`` when it is not registered."""
        try:
            view = self.feature_view()
        except NotRegistered:
            return None
        # Feast's zero TTL means "no bound".
        ttl_days = round(view.ttl.total_seconds() / 86_400) if view.ttl else None
        return FeatureViewInfo(
            name=view.name,
            entity=view.entities[0],
            entity_key=view.join_keys[0],
            features=[f.name for f in view.features],
            label=LABEL,
            ttl_days=ttl_days,
        )


def vector(vehicle_id: int, values: Sequence[int | float]) -> VehicleFeatureVector:
    """One vehicle's values (``FEATURE_NAMES`` order) as its feature vector."""
    return VehicleFeatureVector.model_validate(
        {ENTITY_KEY: vehicle_id, **dict(zip(FEATURE_NAMES, values, strict=True))}
    )


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
