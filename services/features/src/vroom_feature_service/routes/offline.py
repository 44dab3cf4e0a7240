"""``GET /v1/features/offline[/{vehicle_id}]``: the Parquet offline store, from memory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from vroom_common.schemas import MAX_VEHICLE_ID, VEHICLE_ID_RULE
from vroom_feature_service.deps import OfflineDep
from vroom_features.schemas import OfflineFeatureRow, OfflineFeatures

router = APIRouter(prefix="/v1/features/offline", tags=["features"])


@router.get("")
def offline_rows(snapshot: OfflineDep) -> OfflineFeatures:
    """Every fleet row (features, label, event time); ``available: false`` and no rows
    when the file does not exist."""
    return snapshot.features()


@router.get("/{vehicle_id}")
def offline_row(
    vehicle_id: Annotated[int, Path(gt=0, le=MAX_VEHICLE_ID, description=VEHICLE_ID_RULE)],
    snapshot: OfflineDep,
) -> OfflineFeatureRow:
    """One fleet vehicle's row; 404 when the offline store does not hold it."""
    return snapshot.row(vehicle_id)
