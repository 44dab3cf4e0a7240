"""``POST /materialize`` and ``POST /train``: start a pipeline run through the configured
runner (local process, Kubernetes Job, Airflow DAG run). The answer names the run; its
end arrives as a pipeline-completed event on ``/pipelines/events``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from vroom_common.events import DAG_MATERIALIZE, DAG_PIPELINE
from vroom_gateway.deps import ResourcesDep
from vroom_gateway.protection import rate_limited
from vroom_gateway.schemas import TriggeredRun

router = APIRouter(tags=["pipelines"])


@router.post("/materialize", dependencies=[Depends(rate_limited("materialize"))])
async def materialize(resources: ResourcesDep) -> TriggeredRun:
    """Start the materialization (database -> offline and online stores); 409 while a
    materialization runs."""
    return await resources.runner.trigger(DAG_MATERIALIZE)


@router.post("/train", dependencies=[Depends(rate_limited("train"))])
async def train(resources: ResourcesDep) -> TriggeredRun:
    """Start training and promotion (a promotion rolls the new champion out); 409 while
    a training run is in progress."""
    return await resources.runner.trigger(DAG_PIPELINE)
