"""Request and response bodies of the gateway's API (wire-compatible with the Ray Serve
version). The raw attributes (``VehicleFeatures``) and the batch limit live in
``vroom_common.schemas``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from vroom_common.events import DagId
from vroom_common.schemas import (
    MAX_VEHICLE_ID,
    VEHICLE_ID_RULE,
    RequestBody,
    VehicleFeatures,
    VehicleSource,
)
from vroom_features.schemas import feature_fields
from vroom_rollout.progressive.machine import CommandOutcome, Phase, Policy, Transition
from vroom_rollout.progressive.signals import VersionSignals
from vroom_rollout.settings import check_steps

#: Most iterations one /benchmark request may ask for.
MAX_BENCHMARK_ITERATIONS: Final = 100_000

HealthStatus = Literal["ok", "loading", "no_model"]


class Health(BaseModel):
    status: HealthStatus = Field(
        description="ok: the model serves; no_model: the predictor is up without a model; "
        "loading: the predictor cannot be reached."
    )
    model_name: str
    model_version: str = Field(
        description="The version answering inference now; empty when none does."
    )
    mlflow_uri: str
    feast_online: bool = Field(description="The feature service (Redis + Feast) is ready.")


class PredictionInterval(BaseModel):
    """Where the count is expected to fall with probability ``level`` (conformal,
    calibrated on vehicles held out of training; docs/model.md)."""

    lower: float = Field(ge=0, description="Rounded to 2 decimals; never below 0.")
    upper: float = Field(description="Rounded to 2 decimals.")
    level: float = Field(description="The coverage asked for (interval_level).")


class PredictionOut(BaseModel):
    predicted_reservations: float = Field(description="Rounded to 2 decimals.")
    model_version: str
    prediction_interval: PredictionInterval | None = Field(
        description="Null only for a model trained before intervals existed."
    )


class BatchPredictions(BaseModel):
    predictions: list[PredictionOut]


def _vehicle_id() -> Any:
    return Field(gt=0, le=MAX_VEHICLE_ID, description=VEHICLE_ID_RULE)


class VehicleIdRequest(RequestBody):
    vehicle_id: int = _vehicle_id()


class ModelInfo(BaseModel):
    """The champion's registry entry and its training run."""

    version: str
    run_id: str
    trained_at: str | None = Field(description="ISO 8601 start time of the training run.")
    metrics: dict[str, float]
    params: dict[str, str]
    feature_importances: dict[str, float]


class ReloadResult(BaseModel):
    """``POST /reload``: the champion re-resolved and rolled out."""

    status: Literal["reloaded", "unchanged"]
    previous_version: str = Field(description="The version served before; empty when none.")
    current_version: str = Field(description="The version serving now; empty when none.")


# --- vehicles -----------------------------------------------------------------------------


class SavedVehicleOut(BaseModel):
    vehicle_id: int
    status: Literal["saved"] = "saved"
    event_published: bool = Field(
        description="False when Redis was down: the vehicle is saved and the materializer's "
        "reconciliation writes its features later."
    )


class DeletedVehicle(BaseModel):
    status: Literal["deleted"] = "deleted"
    vehicle_id: int


class VehicleOut(VehicleFeatures):
    """A stored vehicle: id, the six raw attributes, source and observed label."""

    # Built from database rows, not from a client: lax types, no unknown fields.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    vehicle_id: int
    source: VehicleSource
    num_reservations: int | None = Field(
        description="Observed reservations of a fleet vehicle; null for new arrivals."
    )


FeatureStoreName = Literal["offline", "online", "none"]


_FEATURES_OUT_DOC = (
    "A vehicle's model features and where they were found (null features when none)."
)
_MATERIALIZED_DOC = "The features are in the offline or online store."

if TYPE_CHECKING:
    # What the type checker sees; at run time the model also has every feature field.
    class VehicleFeaturesOut(BaseModel):
        vehicle_id: int
        materialized: bool
        store: FeatureStoreName
else:
    # vehicle_id, then every feature of the one list (nullable), then where they were found.
    VehicleFeaturesOut = create_model(
        "VehicleFeaturesOut",
        __module__=__name__,
        __doc__=_FEATURES_OUT_DOC,
        vehicle_id=(int, ...),
        **feature_fields(optional=True),
        materialized=(bool, Field(description=_MATERIALIZED_DOC)),
        store=(FeatureStoreName, ...),
    )


# --- benchmarks -----------------------------------------------------------------------------


def _iterations() -> Any:
    return Field(
        default=1000,
        ge=1,
        le=MAX_BENCHMARK_ITERATIONS,
        description=f"Iterations to run (1..{MAX_BENCHMARK_ITERATIONS}); the time budget may "
        "stop the loop earlier.",
    )


class BenchmarkRequest(RequestBody):
    vehicle: VehicleFeatures
    n_iterations: int = _iterations()


class BenchmarkIdRequest(RequestBody):
    vehicle_id: int = _vehicle_id()
    n_iterations: int = _iterations()


class BenchmarkResult(BaseModel):
    n_iterations: int = Field(description="Iterations that ran (fewer when the budget ran out).")
    avg_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    model_version: str
    source: Literal["raw", "online_store"]
    avg_features_ms: float
    avg_predict_ms: float


# --- pipelines --------------------------------------------------------------------------------


class TriggeredRun(BaseModel):
    """A pipeline run was started; its end arrives as a pipeline-completed event."""

    status: Literal["triggered"] = "triggered"
    dag_id: DagId
    dag_run_id: str


class RolloutView(BaseModel):
    """``GET /rollout``: the model's rollout (the current or last one) and its signals."""

    state: Phase = Field(
        description="idle, starting, shadow, canary, promoting, promoted, "
        "rolled_back (docs/rollouts.md)."
    )
    rollout_id: str | None
    champion_version: str | None
    candidate_version: str | None
    weight: int = Field(description="Percent of requests the candidate answers now.")
    started_at: float | None = Field(description="Unix time (seconds) the rollout started.")
    step: str | None = Field(description="The step being judged: shadow or canary-<weight>.")
    steps: list[int] = Field(description="The canary shares of the schedule, in percent.")
    policy: Policy | None
    signals: dict[str, VersionSignals] = Field(
        description="Live signals of the current step, by model version."
    )
    status: str | None = Field(description="What the current step waits for.")
    reason: str | None = Field(description="Why the rollout is where it is.")
    history: list[Transition]
    controller: str | None = Field(description="The controller holding the lease, if any.")
    last_command: CommandOutcome | None


class RolloutStart(RequestBody):
    """``POST /rollout``: start a progressive rollout of a registered version."""

    version: str = Field(pattern=r"^[1-9][0-9]{0,9}$", description="A registered version.")
    steps: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Canary shares in percent, increasing, each 1..99 (default: settings).",
    )
    step_seconds: float | None = Field(default=None, gt=0, le=86_400)
    shadow_seconds: float | None = Field(default=None, ge=0, le=86_400)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else check_steps(value)


class RolloutAbort(RequestBody):
    reason: str | None = Field(default=None, max_length=500)


class DriftDistribution(BaseModel):
    """One feature's (or the prediction's) bins, training and live shares."""

    bins: list[str]
    train: list[float]
    live: list[float]


class ModelDrift(BaseModel):
    """A served model's live window against its training distribution."""

    model: str = Field(description="The served model (the champion, or the rollout candidate).")
    version: str
    window_rows: int = Field(description="Live rows in the window.")
    min_rows: int = Field(description="Rows the window needs before it is scored.")
    reference_rows: int = Field(description="Training rows of the reference.")
    psi: dict[str, float] | None = Field(
        description="Population stability index per feature and for 'prediction'; null "
        "until the window holds min_rows."
    )
    distributions: dict[str, DriftDistribution]


class Monitoring(BaseModel):
    """Drift of the live inputs of every served model (docs/observability.md)."""

    threshold: float = Field(description="PSI above which a distribution counts as drifted.")
    drifted: list[str] = Field(description="'<model> v<version>: <feature>' above threshold.")
    models: list[ModelDrift]
