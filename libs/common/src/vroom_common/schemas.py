"""API schemas shared by the gateway, the feature service and the pipelines.

``VehicleFeatures`` is the one statement of the six raw attributes and their rules:
the HTTP API validates request bodies with it and the seed pipeline validates every
CSV row with it, so a value the API would reject never reaches the database either.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Binary = Annotated[int, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]

#: Where a vehicle came from: the observed fleet (training data) or a new arrival.
VehicleSource = Literal["csv", "ui"]


class VehicleFeatures(BaseModel):
    """The six raw attributes of a listing, as a host enters them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    technology: Binary = Field(description="Instant-booking tech package installed (0 or 1).")
    actual_price: Price = Field(description="Daily price set by the host (> 0).")
    recommended_price: Price = Field(description="Market price recommended by the platform (> 0).")
    num_images: Count = Field(description="Photos on the listing (>= 0).")
    street_parked: Binary = Field(description="Vehicle is parked on the street (0 or 1).")
    description: Count = Field(description="Character count of the listing description (>= 0).")


#: The raw attribute names, in declaration order.
RAW_ATTRIBUTES: tuple[str, ...] = tuple(VehicleFeatures.model_fields)
