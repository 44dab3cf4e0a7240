"""Open the Feast store with the project's settings.

``feature_store.yaml`` gives the project, provider and store types; the registry path
and the Redis connection come from :class:`vroom_common.settings.Settings`, so one
setting (``VROOM_REDIS_URL`` ...) moves every component at once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml
from feast import FeatureStore
from feast.repo_config import RepoConfig

from vroom_common.settings import Settings
from vroom_features.definitions import build


def redis_connection_string(settings: Settings) -> str:
    """Feast's ``host:port,db=N[,password=...]`` form of the settings' Redis URL."""
    parts = urlsplit(settings.redis_url)
    host, port = settings.redis_host_port
    # Bounded timeouts: without them redis-py waits on a hung Redis forever and a lookup
    # against a dead one takes seconds of retries before failing.
    conn = f"{host}:{port},db={settings.redis_db},socket_connect_timeout=2,socket_timeout=5"
    if parts.password:
        conn += f",password={parts.password}"
    if parts.scheme == "rediss":
        conn += ",ssl=true"
    return conn


def feast_yaml(settings: Settings) -> dict[str, Any]:
    """The repo's ``feature_store.yaml`` with paths and connections from ``settings`` (the
    content of a ``feature_store.yaml`` for Feast's own tools, e.g. ``feast serve``)."""
    raw: dict[str, Any] = yaml.safe_load((settings.feast_repo / "feature_store.yaml").read_text())
    registry = raw.get("registry", {})
    if isinstance(registry, str):
        registry = {"path": registry}
    registry["path"] = str(settings.feast_registry_path)
    raw["registry"] = registry
    raw["online_store"] = {
        **raw.get("online_store", {}),
        "connection_string": redis_connection_string(settings),
    }
    return raw


def feast_config(settings: Settings) -> RepoConfig:
    """:func:`feast_yaml` as Feast's config object."""
    settings.feast_registry_path.parent.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(**feast_yaml(settings))
    config.repo_path = settings.feast_repo
    return config


def open_store(settings: Settings) -> FeatureStore:
    """A ``FeatureStore`` for this project's repo, registry and Redis."""
    return FeatureStore(repo_path=str(settings.feast_repo), config=feast_config(settings))


def apply_definitions(store: FeatureStore, settings: Settings) -> None:
    """Register the entity, sources and feature view (idempotent)."""
    store.apply(list(build(settings.offline_store_path)))
