"""Reading and writing the online store (Feast, Redis) through the push source.

Every online write — batch materialization, the event-driven materializer — goes
through :func:`write_online`, and every read through :func:`read_online`, so the
key layout and the columns are Feast's business in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import redis
from feast import FeatureStore
from feast.data_source import PushMode
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from vroom_features.definitions import FEATURE_VIEW_NAME, PUSH_SOURCE_NAME
from vroom_features.transforms import ENTITY_KEY, FEATURE_NAMES, TIMESTAMP_FIELD, compute_features

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
