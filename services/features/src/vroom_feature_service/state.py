"""What the service opens once at start-up and shares between requests."""

from __future__ import annotations

from dataclasses import dataclass

from vroom_common.redis_clients import async_redis_client, redis_client
from vroom_common.settings import Settings
from vroom_feature_service.offline import OfflineStore
from vroom_feature_service.online import (
    FeastBackend,
)
from vroom_features.store import open_store


@dataclass
class ServiceState:
    """The Feast backend (store + Redis client) and the in-memory offline store."""

    settings: Settings
    feast: FeastBackend
    offline: OfflineStore

    @classmethod
    def open(cls, settings: Settings, offline_check_interval_s: float) -> ServiceState:
        """Open the Feast store and load the offline store (blocking: seconds, once)."""
        feast = FeastBackend(
            settings,
            open_store(settings),
            redis_client(settings),
            async_redis_client(settings),
        )
        offline = OfflineStore(settings.offline_store_path, offline_check_interval_s)
        offline.snapshot()
        return cls(settings, feast, offline)

    async def close(self) -> None:
        await self.feast.store.close()  # Feast's async clients; its sync client has no close
        self.feast.client.close()
        await self.feast.reader.client.aclose()
