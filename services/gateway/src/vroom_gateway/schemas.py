"""Request and response bodies of the gateway's API (wire-compatible with the Ray Serve
version). The raw attributes (``VehicleFeatures``) and the batch limit live in
``vroom_common.schemas``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

HealthStatus = Literal["ok", "loading", "no_model"]


class Health(BaseModel):
    status: HealthStatus = Field(
        description="ok: the model serves; no_model: the predictor is up without a model; "
        "loading: the predictor cannot be reached."
    )
    model_name: str
    model_version: str | None = Field(description="The version answering inference now.")
    mlflow_uri: str
    feast_online: bool = Field(description="The feature service (Redis + Feast) is ready.")


class PredictionOut(BaseModel):
    predicted_reservations: float = Field(description="Rounded to 2 decimals.")
    model_version: str


class BatchPredictions(BaseModel):
    predictions: list[PredictionOut]


class VehicleIdRequest(BaseModel):
    vehicle_id: int = Field(gt=0, description="A vehicle id (> 0).")


class ModelInfo(BaseModel):
    """The champion's registry entry and its training run."""

    version: str
    run_id: str
    trained_at: str | None = Field(description="ISO 8601 start time of the training run.")
    metrics: dict[str, float]
    params: dict[str, str]
    feature_importances: dict[str, float]
