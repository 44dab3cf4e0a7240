"""The pipelines as runs: completion events and the end-to-end training pipeline.

Each run has a DAG id (the same ids Airflow uses) and a run id, and publishes one
``pipeline-completed`` event when it ends, successful or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
import structlog

from vroom_common import events
from vroom_common.events import DagId, PipelineCompleted
from vroom_common.redis_clients import redis_client
from vroom_db import one_off_session
from vroom_db.queries import fleet_size
from vroom_pipelines.materialize import MaterializeSummary, materialize
from vroom_pipelines.preflight import check_redis, model_registry
from vroom_pipelines.progress import Progress
from vroom_pipelines.promote import PromotionResult, RolloutHook, StartRollout, promote
from vroom_pipelines.seed import SeedSummary, seed_from_dir, seed_synthetic
from vroom_pipelines.settings import PipelineSettings
from vroom_pipelines.train import TrainResult, train

log = structlog.get_logger(__name__)

#: Fleet size generated when the database is empty and no data folder is given.
DEFAULT_SYNTHETIC_FLEET = 1000


@contextmanager
def pipeline_run(
    settings: PipelineSettings, dag_id: DagId, run_id: str | None = None
) -> Iterator[str]:
    """Publish ``pipeline-completed`` (success or failed) when the block ends."""
    run_id = run_id or events.new_run_id()
    state: str = "failed"
    try:
        yield run_id
        state = "success"
    finally:
        event = PipelineCompleted(dag_id=dag_id, dag_run_id=run_id, state=state)  # type: ignore[arg-type]
        client = redis_client(settings)
        try:
            events.publish(client, event, maxlen=settings.stream_maxlen)
        except redis.exceptions.RedisError as exc:
            log.error("pipeline-completed event not published", error=str(exc), run_id=run_id)
        finally:
            client.close()
        log.info("pipeline run ended", dag_id=dag_id, dag_run_id=run_id, state=state)


@dataclass(frozen=True)
class PipelineSummary:
    dag_run_id: str
    seed: SeedSummary | None
    materialize: MaterializeSummary
    train: TrainResult
    promote: PromotionResult


def seed_if_needed(
    settings: PipelineSettings, data_dir: Path | None, synthetic: int | None, random_seed: int
) -> SeedSummary | None:
    """Seed from ``data_dir`` when given (idempotent); else synthetic data if the DB is empty."""
    if data_dir is not None:
        return seed_from_dir(settings, data_dir)
    with one_off_session(settings.database_url) as session:
        seeded = fleet_size(session) > 0
    if seeded and synthetic is None:
        return None
    return seed_synthetic(settings, synthetic or DEFAULT_SYNTHETIC_FLEET, random_seed)


def run_pipeline(
    settings: PipelineSettings,
    *,
    data_dir: Path | None = None,
    synthetic: int | None = None,
    random_seed: int = 42,
    dag_run_id: str | None = None,
    rollout: RolloutHook | None = None,
    start_rollout: StartRollout | None = None,
    progress: Progress | None = None,
) -> PipelineSummary:
    """Seed (if needed), materialize, train and promote, as one ``vroom_forecast_pipeline`` run."""
    progress = progress or Progress.silent()
    with pipeline_run(settings, events.DAG_PIPELINE, dag_run_id) as run_id:
        check_redis(settings)
        model_registry(settings)
        with progress.step("Seeding the database (if needed)"):
            seeded = seed_if_needed(settings, data_dir, synthetic, random_seed)
        materialized = materialize(settings, progress)
        trained = train(settings, progress=progress)
        with progress.step("Champion/challenger promotion"):
            promoted = promote(settings, rollout, start_rollout)
    return PipelineSummary(run_id, seeded, materialized, trained, promoted)
