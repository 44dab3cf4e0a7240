"""API schemas shared by the gateway, the feature service and the pipelines.

``VehicleFeatures`` is the one statement of the six raw attributes and their rules:
the HTTP API validates request bodies with it and the seed pipeline validates every
CSV row with it, so a value the API would reject never reaches the database either.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Upper bounds keep every value finite and exact through the model's float32 tensor
#: (and inside a 64-bit database integer): far above any real listing, they only
#: refuse input that would overflow.
MAX_PRICE: Final = 1_000_000.0
MAX_COUNT: Final = 1_000_000
#: Vehicle ids are positive 64-bit integers (Feast's int64 entity key).
MAX_VEHICLE_ID: Final = 2**63 - 1
#: How every API documents a vehicle id.
VEHICLE_ID_RULE: Final = "A vehicle id (> 0, a 64-bit integer)."


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


#: Most vehicles one request may carry (compute, online lookup, batch prediction).
MAX_BATCH_VEHICLES: Final = 1000
