"""``POST /v1/features/online``: features by vehicle id from the Feast online store."""

from __future__ import annotations

from fastapi import APIRouter

from vroom_common.schemas import OnlineFeatures
from vroom_feature_service.deps import FeastDep
from vroom_feature_service.schemas import OnlineLookupRequest

router = APIRouter(prefix="/v1/features", tags=["features"])


@router.post("/online")
def online(body: OnlineLookupRequest, feast: FeastDep) -> OnlineFeatures:
    """Features of the vehicles the online store holds; the other ids in ``missing``.

    503 when Redis does not answer or the feature view is not registered.
    """
    return feast.lookup(body.vehicle_ids)
