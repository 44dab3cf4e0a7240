"""``POST /v1/features/online``: features by vehicle id from the Feast online store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from vroom_common.schemas import MAX_VEHICLE_ID, VEHICLE_ID_RULE
from vroom_common.tracing import span
from vroom_feature_service.deps import FeastDep
from vroom_feature_service.schemas import OnlineLookupRequest
from vroom_features.schemas import OnlineDeletion, OnlineFeatures

router = APIRouter(prefix="/v1/features", tags=["features"])


@router.post("/online")
async def online(body: OnlineLookupRequest, feast: FeastDep) -> OnlineFeatures:
    """Features of the vehicles the online store holds; the other ids in ``missing``.

    503 when Redis does not answer or the feature view is not registered.
    """
    with span("features.online_read", rows=len(body.vehicle_ids)):
        return await feast.lookup(body.vehicle_ids)


@router.delete("/online/{vehicle_id}")
def delete_online(
    vehicle_id: Annotated[int, Path(gt=0, le=MAX_VEHICLE_ID, description=VEHICLE_ID_RULE)],
    feast: FeastDep,
) -> OnlineDeletion:
    """Remove a vehicle's features from the online store (the gateway does it when a
    new arrival is deleted). Idempotent: ``deleted`` says whether there were any."""
    return feast.delete(vehicle_id)
