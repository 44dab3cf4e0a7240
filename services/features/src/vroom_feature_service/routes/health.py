"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness)."""

from __future__ import annotations

from fastapi import APIRouter

from vroom_feature_service.deps import FeastDep
from vroom_feature_service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process serves requests (no dependency is asked)."""
    return Health()


@router.get("/readyz")
def readyz(feast: FeastDep) -> Readiness:
    """Ready when Redis answers and the registry holds the feature view; otherwise 503
    with the reason."""
    feast.ping()
    view = feast.feature_view()
    return Readiness(feature_view=view.name, redis_url=feast.redis_url)
