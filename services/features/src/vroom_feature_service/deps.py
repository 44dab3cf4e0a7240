"""FastAPI dependencies: the shared state opened by the app's lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vroom_feature_service.offline import OfflineSnapshot
from vroom_feature_service.online import FeastBackend
from vroom_feature_service.state import ServiceState


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def get_feast(request: Request) -> FeastBackend:
    # async: a trivial dependency should not cost a hop through the thread pool
    return _state(request).feast


def get_offline_snapshot(request: Request) -> OfflineSnapshot:
    """The offline store's rows, reloaded first when the file changed (may read a file)."""
    return _state(request).offline.snapshot()


FeastDep = Annotated[FeastBackend, Depends(get_feast)]
OfflineDep = Annotated[OfflineSnapshot, Depends(get_offline_snapshot)]
