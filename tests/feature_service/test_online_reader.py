"""The fast online read (``OnlineReader``: pipelined HMGETs of Feast's keys) answers what
Feast's SDK answers, vehicle by vehicle, on the real materialized fleet."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import redis
import redis.asyncio as aioredis
from feast import FeatureStore

from tests.feature_service.conftest import Materialized
from vroom_common.schemas import RAW_ATTRIBUTES
from vroom_features import ENTITY_KEY, FEATURE_NAMES, FEATURES
from vroom_features.online import (
    ONLINE_FIELDS,
    OnlineReader,
    delete_online,
    online_key,
    online_rows,
    read_online,
    write_online,
)
from vroom_features.store import open_store

#: Ids no fleet vehicle has: these tests write and delete them.
SCRATCH = [900_000_001, 900_000_002]


@pytest.fixture(scope="module")
def store(materialized: Materialized) -> FeatureStore:
    return open_store(materialized.settings)


@pytest.fixture
def sync_client(materialized: Materialized) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(materialized.settings.redis_url)
    yield client
    client.close()


def fast_read(store: FeatureStore, url: str, ids: Sequence[int]) -> list[list[Any] | None]:
    async def go() -> list[list[Any] | None]:
        client = aioredis.Redis.from_url(url)
        try:
            rows: list[list[Any] | None] = await OnlineReader(store, client).read(ids)
            return rows
        finally:
            await client.aclose()

    return asyncio.run(go())


def sdk_read(store: FeatureStore, ids: Sequence[int]) -> list[list[Any] | None]:
    """Feast's answer in the reader's shape: ``None`` when any feature is missing."""
    frame = read_online(store, ids)
    rows: list[list[Any] | None] = []
    for values in frame.to_numpy().tolist():
        missing = any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)
        rows.append(None if missing else values)
    return rows


def test_agrees_with_feast_on_the_whole_fleet(
    store: FeatureStore, materialized: Materialized, fleet: list[dict[str, Any]]
) -> None:
    ids = [v["vehicle_id"] for v in fleet] + [10**12, 10**12 + 1]

    fast = fast_read(store, materialized.settings.redis_url, ids)

    assert fast == sdk_read(store, ids)
    assert fast[-2:] == [None, None]
    found = [row for row in fast if row is not None]
    assert len(found) == len(fleet)
    for row in found:  # the feature's own kind, not numpy's or Feast's float
        for feature, value in zip(FEATURES, row, strict=True):
            assert type(value) is (int if feature.kind == "int" else float), feature.name


def test_one_id_and_no_id(
    store: FeatureStore, materialized: Materialized, fleet: list[dict[str, Any]]
) -> None:
    first = fleet[0]["vehicle_id"]
    url = materialized.settings.redis_url

    assert fast_read(store, url, [first]) == sdk_read(store, [first])
    assert fast_read(store, url, []) == []


@pytest.fixture
def scratch(store: FeatureStore, sync_client: redis.Redis) -> Iterator[list[int]]:
    yield SCRATCH
    delete_online(store, sync_client, SCRATCH)


def _write(store: FeatureStore, vehicle_id: int, raw: dict[str, Any], when: datetime) -> None:
    frame = pd.DataFrame([{ENTITY_KEY: vehicle_id, **{k: raw[k] for k in RAW_ATTRIBUTES}}])
    write_online(store, online_rows(frame, now=when))


def test_old_rows_and_incomplete_rows_agree(
    store: FeatureStore,
    materialized: Materialized,
    fleet: list[dict[str, Any]],
    sync_client: redis.Redis,
    scratch: list[int],
) -> None:
    """A row past the view's TTL, and a row lacking a feature (written before that
    feature existed): whatever Feast answers, the fast read answers the same."""
    old, partial = scratch
    long_ago = datetime.now(UTC) - timedelta(days=800)
    _write(store, old, fleet[0], long_ago)
    _write(store, partial, fleet[1], datetime.now(UTC))
    sync_client.hdel(online_key(store, partial), ONLINE_FIELDS[FEATURE_NAMES.index("price_ratio")])

    fast = fast_read(store, materialized.settings.redis_url, scratch)

    assert fast == sdk_read(store, scratch)
    assert fast[0] is not None  # Feast does not apply the view's TTL on reads
    assert fast[1] is None  # an incomplete row is never served
