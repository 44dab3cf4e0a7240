"""``POST /v1/features/compute``: features from raw attributes."""

from __future__ import annotations

from fastapi import APIRouter

from vroom_common.tracing import span
from vroom_feature_service.compute import matrix_of
from vroom_feature_service.schemas import ComputeRequest
from vroom_features.schemas import FeatureMatrix

router = APIRouter(prefix="/v1/features", tags=["features"])


@router.post("/compute")
async def compute(body: ComputeRequest) -> FeatureMatrix:
    """Features of 1 to 1,000 vehicles, rows in the order given, columns in
    ``feature_names`` order.

    Runs on the event loop: about a millisecond of numpy for 1,000 rows, cheaper than
    a hop through the thread pool.
    """
    with span("features.compute", rows=len(body.vehicles)):
        return matrix_of(body.vehicles)
