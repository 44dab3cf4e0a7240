"""Request and response models of the feature service, named by role.

Responses the gateway also reads (``FeatureMatrix``, ``OnlineFeatures``,
``OfflineFeatures``, ``StoresInfo`` ...) live in ``vroom_common.schemas``; this module
holds the request bodies and the probe answers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from vroom_common.schemas import (
    MAX_BATCH_VEHICLES,
    MAX_VEHICLE_ID,
    VEHICLE_ID_RULE,
    VehicleFeatures,
)

VehicleId = Annotated[int, Field(gt=0, le=MAX_VEHICLE_ID, description=VEHICLE_ID_RULE)]


class ComputeRequest(BaseModel):
    """Raw attributes of the vehicles to compute features for."""

    model_config = ConfigDict(extra="forbid")

    vehicles: list[VehicleFeatures] = Field(min_length=1, max_length=MAX_BATCH_VEHICLES)


class OnlineLookupRequest(BaseModel):
    """Vehicle ids to look up in the online store."""

    model_config = ConfigDict(extra="forbid")

    vehicle_ids: list[VehicleId] = Field(min_length=1, max_length=MAX_BATCH_VEHICLES)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    feature_view: str
    redis_url: str
