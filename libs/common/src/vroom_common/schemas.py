"""API schemas shared by the gateway, the feature service and the pipelines.

``VehicleFeatures`` is the one statement of the six raw attributes and their rules:
the HTTP API validates request bodies with it and the seed pipeline validates every
CSV row with it, so a value the API would reject never reaches the database either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Upper bounds keep every value finite and exact through the model's float32 tensor
#: (and inside a 64-bit database integer): far above any real listing, they only
#: refuse input that would overflow.
MAX_PRICE: Final = 1_000_000.0
MAX_COUNT: Final = 1_000_000


class RequestBody(BaseModel):
    """Base of every request body: unknown fields are ignored (as the Ray Serve version
    does), and types are strict: a boolean or a string where a number is expected, or a
    non-integral number where an integer is, is a 422 naming the field."""

    model_config = ConfigDict(strict=True, extra="ignore")


Binary = Annotated[int, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Price = Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)]

#: Where a vehicle came from: the observed fleet (training data) or a new arrival.
VehicleSource = Literal["csv", "ui"]


class VehicleFeatures(RequestBody):
    """The six raw attributes of a listing, as a host enters them. Files of text (the
    seed's CSV) validate with ``strict=False``: there every value is a string."""

    model_config = ConfigDict(frozen=True)

    technology: Binary = Field(description="Instant-booking tech package installed (0 or 1).")
    actual_price: Price = Field(description="Daily price set by the host (> 0, <= 1e6).")
    recommended_price: Price = Field(
        description="Market price recommended by the platform (> 0, <= 1e6)."
    )
    num_images: Count = Field(description="Photos on the listing (0 to 1e6).")
    street_parked: Binary = Field(description="Vehicle is parked on the street (0 or 1).")
    description: Count = Field(description="Character count of the listing description (0 to 1e6).")


#: The raw attribute names, in declaration order.
RAW_ATTRIBUTES: tuple[str, ...] = tuple(VehicleFeatures.model_fields)


# --- feature service contracts (the feature service answers with them, the gateway reads them)

#: Most vehicles one request may carry (compute, online lookup, batch prediction).
MAX_BATCH_VEHICLES: Final = 1000


class VehicleFeatureVector(BaseModel):
    """One vehicle's model features, named; ``vehicle_id`` when the vehicle is known.

    The feature fields mirror ``vroom_features.FEATURES`` (names, order, int/float);
    ``tests/feature_service/test_schemas.py`` holds them to it.
    """

    model_config = ConfigDict(frozen=True)

    vehicle_id: int | None = Field(default=None, description="The vehicle's id, when it has one.")
    technology: int
    num_images: int
    street_parked: int
    description: int
    price_diff: float = Field(description="actual_price - recommended_price, to cents.")
    price_ratio: float = Field(description="actual_price / recommended_price, to 4 decimals.")


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


class OfflineFeatureRow(VehicleFeatureVector):
    """A fleet vehicle in the offline store: its features, label and event time."""

    vehicle_id: int
    num_reservations: int | None = Field(description="Observed reservation count (the label).")
    event_timestamp: datetime


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
