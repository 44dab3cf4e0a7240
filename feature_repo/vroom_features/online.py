"""Reading and writing the online store (Feast, Redis) through the push source.

Every online write — batch materialization, the event-driven materializer — goes
through :func:`write_online`. Reads go through Feast's SDK (:func:`read_online`) off
the request path, and through :class:`OnlineReader` on it: one pipelined ``HMGET``
per vehicle of the keys and hash fields Feast writes, computed by Feast's own
helpers, on a pooled asyncio client. The SDK's read costs milliseconds of Python per
call (registry lookups, protobuf responses, a pandas frame) for what is one Redis
round trip; ``tests/feature_service/test_online_reader.py`` checks that both reads
agree on every vehicle of the fleet, so the layout stays Feast's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import pandas as pd
import redis
import redis.asyncio as aioredis
from feast import FeatureStore
from feast.data_source import PushMode
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from vroom_features.definitions import FEATURE_VIEW_NAME, PUSH_SOURCE_NAME
from vroom_features.transforms import (
    ENTITY_KEY,
    FEATURE_NAMES,
    FEATURES,
    TIMESTAMP_FIELD,
    compute_features,
)

#: Feature references of the feature view, in model order.
FEATURE_REFS: tuple[str, ...] = tuple(f"{FEATURE_VIEW_NAME}:{name}" for name in FEATURE_NAMES)


def online_rows(raw: pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
    """``vehicle_id``, the features and the event time for each row of raw attributes."""
    frame = pd.concat([raw[[ENTITY_KEY]].reset_index(drop=True),
                       compute_features(raw).reset_index(drop=True)], axis=1)  # fmt: skip
    frame[TIMESTAMP_FIELD] = pd.Timestamp(now or datetime.now(UTC))
    return frame


def write_online(store: FeatureStore, frame: pd.DataFrame) -> None:
    """Upsert rows of :func:`online_rows` into the online store (idempotent)."""
    if frame.empty:
        return
    store.push(PUSH_SOURCE_NAME, frame, to=PushMode.ONLINE)


def read_online(store: FeatureStore, vehicle_ids: Sequence[int]) -> pd.DataFrame:
    """Online features of ``vehicle_ids``, indexed by id, in the order asked.

    Vehicles the store does not hold come back as rows of missing values; use
    :func:`split_found` to separate them rather than pass NaNs on.
    """
    if not vehicle_ids:
        return pd.DataFrame(columns=list(FEATURE_NAMES), index=pd.Index([], name=ENTITY_KEY))
    response = store.get_online_features(
        features=list(FEATURE_REFS), entity_rows=[{ENTITY_KEY: int(i)} for i in vehicle_ids]
    )
    return pd.DataFrame(response.to_dict()).set_index(ENTITY_KEY)[list(FEATURE_NAMES)]


def split_found(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """(rows with every feature present, ids of the vehicles not in the store)."""
    missing = frame.isna().any(axis=1)
    return frame[~missing], [int(i) for i in frame.index[missing]]


def online_key(store: FeatureStore, vehicle_id: int) -> bytes:
    """The Redis key under which Feast's Redis online store keeps a vehicle's features:
    the serialized entity key followed by the project name (Feast's layout; a test
    writes through Feast and finds the key)."""
    entity_key = EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(int64_val=vehicle_id)])
    serialized = serialize_entity_key(
        entity_key, entity_key_serialization_version=store.config.entity_key_serialization_version
    )
    return bytes(serialized) + store.project.encode()


def delete_online(store: FeatureStore, client: redis.Redis, vehicle_ids: Sequence[int]) -> int:
    """Remove vehicles' features from the online store; returns how many it held.

    Feast has no per-entity delete, so this deletes the keys Feast wrote
    (:func:`online_key`) with the same Redis the store points at.
    """
    if not vehicle_ids:
        return 0
    deleted: int = client.delete(*(online_key(store, int(i)) for i in vehicle_ids))  # type: ignore[assignment]
    return deleted


#: The hash fields Feast's Redis store keeps a vehicle's values under (murmur3 of
#: ``view:feature``, Feast's helper), in ``FEATURE_NAMES`` order.
ONLINE_FIELDS: Final[tuple[bytes, ...]] = tuple(
    _mmh3(f"{FEATURE_VIEW_NAME}:{name}") for name in FEATURE_NAMES
)
#: A feature's kind -> the Python type of its values (Feast stores int64 or double).
_KIND: Final = {f.name: int if f.kind == "int" else float for f in FEATURES}
_CASTS: Final = tuple(_KIND[name] for name in FEATURE_NAMES)


class OnlineReader:
    """Online features by vehicle id, read straight from Feast's Redis keys.

    Answers what :func:`read_online` answers (a vehicle lacking any feature is missing),
    as plain Python rows, on a caller's asyncio client: its pool, timeouts and retry
    policy are the caller's. Raises redis-py's errors as they come.
    """

    def __init__(self, store: FeatureStore, client: aioredis.Redis) -> None:
        self.client = client
        self._project = store.project.encode()
        self._version = store.config.entity_key_serialization_version

    def key(self, vehicle_id: int) -> bytes:
        """The vehicle's Redis key (:func:`online_key`'s, without a store per call)."""
        entity_key = EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(int64_val=vehicle_id)])
        return (
            serialize_entity_key(entity_key, entity_key_serialization_version=self._version)
            + self._project
        )

    async def read(self, vehicle_ids: Sequence[int]) -> list[list[int | float] | None]:
        """For each id in order: its values in ``FEATURE_NAMES`` order, or ``None``."""
        if not vehicle_ids:
            return []
        # HMGET through execute_command: redis-py's stubs type keys and fields as str.
        if len(vehicle_ids) == 1:  # no pipeline object for the common case
            key = self.key(int(vehicle_ids[0]))
            replies = [await self.client.execute_command("HMGET", key, *ONLINE_FIELDS)]  # type: ignore[no-untyped-call]
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                for vehicle_id in vehicle_ids:
                    pipe.execute_command("HMGET", self.key(int(vehicle_id)), *ONLINE_FIELDS)
                replies = await pipe.execute()
        return [_decode(reply) for reply in replies]


def _decode(reply: Sequence[bytes | None]) -> list[int | float] | None:
    values: list[int | float] = []
    for raw, cast in zip(reply, _CASTS, strict=True):
        if not raw:
            return None
        value = Value.FromString(raw)
        kind = value.WhichOneof("val")
        if kind is None:  # Feast's null
            return None
        values.append(cast(getattr(value, kind)))
    return values
