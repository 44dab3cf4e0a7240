"""The materializer's own knobs (``VROOM_MATERIALIZER_*``); the shared settings give the rest.

They live here rather than in :class:`vroom_common.settings.Settings` because no other
component reads them. ``python -m vroom_materializer`` flags override them.
"""

from __future__ import annotations

import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_consumer_name() -> str:
    """The host name: stable across restarts of a process on one host (a restarted
    materializer finds its own pending entries at once), distinct between pods (whose
    entries the others reclaim once idle)."""
    return socket.gethostname() or "materializer"


class MaterializerOptions(BaseSettings):
    """How the materializer reads, batches, retries and reports."""

    model_config = SettingsConfigDict(env_prefix="VROOM_MATERIALIZER_", extra="ignore")

    consumer: str = Field(
        default_factory=default_consumer_name,
        min_length=1,
        description="Consumer name in the group (default: the host name).",
    )
    batch_size: int = Field(
        default=100, ge=1, le=1000, description="Entries read, and pushed to Feast, at once."
    )
    block_ms: int = Field(
        default=1000,
        ge=10,
        le=60_000,
        description="How long one read waits for new entries; bounds heartbeat and stop latency.",
    )
    min_idle_ms: int = Field(
        default=60_000,
        ge=0,
        description="Another consumer's pending entry is reclaimed after this idle time.",
    )
    claim_interval_s: float = Field(
        default=30.0, gt=0, description="How often the running loop reclaims idle entries."
    )
    reconcile_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Periodic reconciliation (0: only at start-up and after a Redis outage).",
    )
    reconcile_chunk: int = Field(
        default=500, ge=1, le=10_000, description="Vehicle ids per online-store lookup."
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description="Tries of an entry failing with a non-transient error before dead-lettering.",
    )
    max_deliveries: int = Field(
        default=10,
        ge=1,
        description="An entry delivered more often than this without an ack is dead-lettered.",
    )
    max_backoff_s: float = Field(
        default=5.0, gt=0, description="Longest wait between retries while Redis or the DB is down."
    )
    prune_idle_ms: int = Field(
        default=86_400_000,
        ge=0,
        description="Consumers with nothing pending and idle this long leave the group (0: never).",
    )
    heartbeat_max_age_s: float = Field(
        default=30.0, gt=0, description="``--probe`` fails when the heartbeat is older than this."
    )

    # --- the prediction log (vroom_materializer.prediction_log) -----------------------------
    prediction_log_flush_s: float = Field(
        default=10.0,
        gt=0,
        description="Served predictions are written to Parquet at least this often.",
    )
    prediction_log_flush_rows: int = Field(
        default=50_000, ge=1, description="...or as soon as this many rows are waiting."
    )
    prediction_log_retention_days: int = Field(
        default=30, ge=1, description="Days of logged predictions kept (older days are deleted)."
    )
    prediction_log_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="Size budget of the prediction log's files; the oldest go first past it.",
    )
    prediction_log_housekeeping_s: float = Field(
        default=300.0,
        gt=0,
        description="How often past days are compacted and the retention and size limits applied.",
    )
