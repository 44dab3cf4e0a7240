"""``POST /predict``, ``/predict/batch``, ``/predict/id``: features from the feature
service, predictions from the predictor."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import APIRouter, Body, Response

from vroom_common.errors import NotFound
from vroom_common.schemas import MAX_BATCH_VEHICLES, VehicleFeatures
from vroom_features import FEATURE_NAMES
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.deps import ResourcesDep
from vroom_gateway.schemas import BatchPredictions, PredictionOut, VehicleIdRequest

router = APIRouter(tags=["predict"])


def outputs(prediction: Prediction) -> list[dict[str, Any]]:
    """The API's predictions (``PredictionOut``: 2 decimals, the version that computed
    them) as plain dicts."""
    version = prediction.model_version
    return [
        {"predicted_reservations": round(value, 2), "model_version": version}
        for value in prediction.values
    ]


def json_response(body: Any) -> Response:
    """``body`` serialized once with orjson. The routes declare their model as
    ``response_model`` (OpenAPI) and build bodies of exactly that shape; FastAPI's
    re-validation of 1,000 predictions would cost more than the inference."""
    return Response(orjson.dumps(body), media_type="application/json")


async def online_matrix(features: FeatureServiceClient, vehicle_id: int) -> npt.NDArray[np.float32]:
    """One vehicle's features from the online store as a ``[1, 5]`` row; 404 when the
    store does not hold them (unknown vehicle, or not materialized yet)."""
    online = await features.online([vehicle_id])
    if not online.found:
        raise NotFound(f"vehicle {vehicle_id} not found in the online store")
    row = online.found[0]
    return np.asarray([[float(getattr(row, name)) for name in FEATURE_NAMES]], dtype=np.float32)


@router.post("/predict", response_model=PredictionOut)
async def predict(vehicle: VehicleFeatures, resources: ResourcesDep) -> Response:
    """Predicted reservations for one vehicle's raw attributes."""
    matrix = await resources.features.compute([vehicle])
    prediction = await resources.traffic.predict(matrix, matrix.tobytes())
    return json_response(outputs(prediction)[0])


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
) -> Response:
    """Predictions for up to 1000 vehicles, in the order given."""
    if not vehicles:
        return json_response({"predictions": []})
    matrix = await resources.features.compute(vehicles)
    # One key for the whole batch: a batch is answered by one version.
    prediction = await resources.traffic.predict(matrix, matrix.tobytes())
    return json_response({"predictions": outputs(prediction)})


@router.post("/predict/id", response_model=PredictionOut)
async def predict_by_id(body: VehicleIdRequest, resources: ResourcesDep) -> Response:
    """Predicted reservations for a known vehicle, from its online-store features."""
    matrix = await online_matrix(resources.features, body.vehicle_id)
    prediction = await resources.traffic.predict(matrix, b"id:%d" % body.vehicle_id)
    return json_response(outputs(prediction)[0])
