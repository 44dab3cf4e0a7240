"""The feature service's contracts: it answers with them and the gateway reads them.

The feature fields of these models are generated from :data:`vroom_features.FEATURES`
(name, int/float, description, order), so a feature added to the one list appears in
every schema and in the OpenAPI documents without being restated.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from vroom_features.transforms import FEATURES, LABEL, TIMESTAMP_FIELD

_KIND: dict[str, type] = {"int": int, "float": float}


def feature_fields(*, optional: bool = False) -> dict[str, Any]:
    """``create_model`` field definitions of every feature, in model order; with
    ``optional``, each may be null (and defaults to it)."""
    fields: dict[str, Any] = {}
    for feature in FEATURES:
        kind = _KIND[feature.kind]
        if optional:
            fields[feature.name] = (kind | None, Field(default=None, description=feature.doc))
        else:
            fields[feature.name] = (kind, Field(description=feature.doc))
    return fields


class FeatureVectorBase(BaseModel):
    """One vehicle's model features, named; ``vehicle_id`` when the vehicle is known."""

    model_config = ConfigDict(frozen=True)

    vehicle_id: int | None = Field(default=None, description="The vehicle's id, when it has one.")


if TYPE_CHECKING:
    # The type checker sees the base; the fields exist at run time (built just below).
    VehicleFeatureVector = FeatureVectorBase
else:
    VehicleFeatureVector = create_model(
        "VehicleFeatureVector",
        __base__=FeatureVectorBase,
        __module__=__name__,
        __doc__=FeatureVectorBase.__doc__,
        **feature_fields(),
    )


class FeatureMatrix(BaseModel):
    """Features of several vehicles: one row per vehicle, columns in ``feature_names`` order.

    The rows are the predictor's input tensor as is (``vroom_features.contract``).
    """

    feature_names: list[str]
    features: list[list[float]]


class OnlineFeatures(BaseModel):
    """An online-store lookup: the vehicles found, and the ids the store does not hold."""

    found: list[VehicleFeatureVector] = Field(description="In the order asked; no missing values.")
    missing: list[int] = Field(description="Ids without (complete) features in the online store.")


class OnlineDeletion(BaseModel):
    """The answer to removing a vehicle's online features."""

    vehicle_id: int
    deleted: bool = Field(description="False when the online store held nothing for it.")


class _OfflineRowBase(VehicleFeatureVector):
    """A fleet vehicle in the offline store: its features, label and event time."""

    vehicle_id: int


if TYPE_CHECKING:
    OfflineFeatureRow = _OfflineRowBase
else:
    OfflineFeatureRow = create_model(
        "OfflineFeatureRow",
        __base__=_OfflineRowBase,
        __module__=__name__,
        __doc__=_OfflineRowBase.__doc__,
        **{
            LABEL: (int | None, Field(description="Observed reservation count (the label).")),
            TIMESTAMP_FIELD: (datetime, ...),
        },
    )


class OfflineFeatures(BaseModel):
    """The offline store's rows as the feature service holds them in memory."""

    available: bool = Field(description="False when the Parquet file is missing or unreadable.")
    path: str
    last_modified: datetime | None
    rows: list[OfflineFeatureRow]


class OfflineStoreInfo(BaseModel):
    available: bool
    type: Literal["parquet"] = "parquet"
    path: str
    size_bytes: int | None
    last_modified: float | None = Field(
        description="When the file was last written: Unix time, seconds."
    )
    rows: int = Field(description="Rows held in memory (fleet vehicles).")
    error: str | None = Field(default=None, description="Why the file could not be read.")


class OnlineStoreInfo(BaseModel):
    available: bool = Field(description="Redis answered.")
    type: Literal["redis"] = "redis"
    redis_url: str = Field(description="Without the password.")
    keys: int | None = Field(description="Keys of the Feast project (one per vehicle).")
    used_memory_human: str | None
    error: str | None = None


class FeatureViewInfo(BaseModel):
    """Facts of the feature view as registered in the Feast registry."""

    name: str
    entity: str
    entity_key: str
    features: list[str]
    label: str
    ttl_days: int | None = Field(description="Feature freshness bound in days; null: none.")


class StoresInfo(BaseModel):
    """The ``/stores`` body. ``feature_view`` is null until the definitions are registered."""

    offline_store: OfflineStoreInfo
    online_store: OnlineStoreInfo
    feature_view: FeatureViewInfo | None
