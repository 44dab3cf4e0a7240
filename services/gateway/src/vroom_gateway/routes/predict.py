"""``POST /predict``, ``/predict/batch``, ``/predict/id``: features from the feature
service, predictions from the predictor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import APIRouter, Body, Query, Response
from pydantic import AfterValidator

from vroom_common.errors import NotFound
from vroom_common.observability import request_started
from vroom_common.schemas import MAX_BATCH_VEHICLES, VehicleFeatures
from vroom_common.tracing import span
from vroom_features import FEATURE_NAMES
from vroom_features.contract import DEFAULT_INTERVAL_LEVEL, INTERVAL_LEVELS
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.deps import Resources, ResourcesDep
from vroom_gateway.schemas import BatchPredictions, PredictionOut, VehicleIdRequest

router = APIRouter(tags=["predict"])


def _check_level(level: float) -> float:
    if level not in INTERVAL_LEVELS:
        allowed = ", ".join(f"{known:g}" for known in INTERVAL_LEVELS)
        raise ValueError(f"interval_level must be one of {allowed} (the calibrated levels)")
    return level


IntervalLevel = Annotated[
    float,
    AfterValidator(_check_level),
    Query(
        description="Coverage of the prediction interval, one of the calibrated levels "
        f"({', '.join(f'{known:g}' for known in INTERVAL_LEVELS)}).",
    ),
]


def outputs(prediction: Prediction, level: float = DEFAULT_INTERVAL_LEVEL) -> list[dict[str, Any]]:
    """The API's predictions (``PredictionOut``: 2 decimals, the version that computed
    them, the interval at ``level`` when the model has intervals) as plain dicts."""
    version = prediction.model_version
    rows = [
        {"predicted_reservations": round(value, 2), "model_version": version}
        for value in prediction.values
    ]
    bounds = prediction.interval(level)
    if bounds is not None:
        # tolist(): Python floats in one call (float32 -> float64 is exact), not one
        # numpy scalar per value.
        for row, lower, upper in zip(rows, bounds[0].tolist(), bounds[1].tolist(), strict=True):
            row["prediction_interval"] = {
                "lower": round(lower, 2),
                "upper": round(upper, 2),
                "level": level,
            }
    else:
        for row in rows:
            row["prediction_interval"] = None
    return rows


def json_response(body: Any) -> Response:
    """``body`` serialized once with orjson. The routes declare their model as
    ``response_model`` (OpenAPI) and build bodies of exactly that shape; FastAPI's
    re-validation of 1,000 predictions would cost more than the inference."""
    return Response(orjson.dumps(body), media_type="application/json")


async def online_matrix(features: FeatureServiceClient, vehicle_id: int) -> npt.NDArray[np.float32]:
    """One vehicle's features from the online store as a ``[1, N_FEATURES]`` row; 404 when the
    store does not hold them (unknown vehicle, or not materialized yet)."""
    online = await features.online([vehicle_id])
    if not online.found:
        raise NotFound(f"vehicle {vehicle_id} not found in the online store")
    row = online.found[0]
    return np.asarray([[float(getattr(row, name)) for name in FEATURE_NAMES]], dtype=np.float32)


async def answer(
    resources: Resources,
    route: str,
    features: Awaitable[npt.NDArray[np.float32]],
    key: Callable[[npt.NDArray[np.float32]], bytes],
    body: Callable[[Prediction], Any],
    *,
    level: float,
    vehicle_ids: list[int] | None = None,
) -> Response:
    """A prediction's three hops, each timed into ``vroom_gateway_stage_seconds``:
    ``features`` (the feature service's call, not yet awaited), inference for the
    rollout's ``key`` of the matrix, and ``body`` of the prediction serialized. The
    answer then goes to the prediction log (the interval at ``level``)."""
    times = [request_started(), perf_counter()]
    matrix = await features
    times.append(perf_counter())
    prediction = await resources.traffic.predict(matrix, key(matrix))
    times.append(perf_counter())
    with span("serialization", rows=len(prediction.values)):
        response = json_response(body(prediction))
    times.append(perf_counter())
    resources.stages.observe(route, times)
    resources.prediction_log.record(
        route, matrix, prediction, level=level, started=times[0], vehicle_ids=vehicle_ids
    )
    return response


@router.post("/predict", response_model=PredictionOut)
async def predict(
    vehicle: VehicleFeatures,
    resources: ResourcesDep,
    interval_level: IntervalLevel = DEFAULT_INTERVAL_LEVEL,
) -> Response:
    """Predicted reservations for one vehicle's raw attributes, with the interval."""
    return await answer(
        resources,
        "/predict",
        resources.features.compute([vehicle]),
        key=lambda matrix: matrix.tobytes(),
        body=lambda prediction: outputs(prediction, interval_level)[0],
        level=interval_level,
    )


@router.post("/predict/batch", response_model=BatchPredictions)
async def predict_batch(
    vehicles: Annotated[
        list[VehicleFeatures],
        Body(
            max_length=MAX_BATCH_VEHICLES,
            description=f"0 to {MAX_BATCH_VEHICLES} vehicles' raw attributes.",
        ),
    ],
    resources: ResourcesDep,
    interval_level: IntervalLevel = DEFAULT_INTERVAL_LEVEL,
) -> Response:
    """Predictions for up to 1000 vehicles, in the order given."""
    if not vehicles:
        return json_response({"predictions": []})
    return await answer(
        resources,
        "/predict/batch",
        resources.features.compute(vehicles),
        # One key for the whole batch: a batch is answered by one version.
        key=lambda matrix: matrix.tobytes(),
        body=lambda prediction: {"predictions": outputs(prediction, interval_level)},
        level=interval_level,
    )


@router.post("/predict/id", response_model=PredictionOut)
async def predict_by_id(
    body: VehicleIdRequest,
    resources: ResourcesDep,
    interval_level: IntervalLevel = DEFAULT_INTERVAL_LEVEL,
) -> Response:
    """Predicted reservations for a known vehicle, from its online-store features."""
    return await answer(
        resources,
        "/predict/id",
        online_matrix(resources.features, body.vehicle_id),
        key=lambda _matrix: b"id:%d" % body.vehicle_id,
        body=lambda prediction: outputs(prediction, interval_level)[0],
        level=interval_level,
        vehicle_ids=[body.vehicle_id],
    )
