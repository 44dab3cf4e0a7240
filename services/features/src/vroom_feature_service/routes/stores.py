"""``GET /v1/stores``: what the offline and online stores and the feature view hold."""

from __future__ import annotations

from fastapi import APIRouter

from vroom_feature_service.deps import FeastDep, OfflineDep
from vroom_features.schemas import StoresInfo

router = APIRouter(prefix="/v1", tags=["stores"])


@router.get("/stores")
def stores(feast: FeastDep, snapshot: OfflineDep) -> StoresInfo:
    """Store facts. Answers even when Redis is down (``online_store.available: false``)
    or nothing is registered yet (``feature_view: null``)."""
    return StoresInfo(
        offline_store=snapshot.info(),
        online_store=feast.online_info(),
        feature_view=feast.feature_view_info(),
    )
