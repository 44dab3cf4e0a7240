"""``POST /predict``, ``/predict/batch``, ``/predict/id``: features from the feature
service, predictions from the predictor."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body

from vroom_common.errors import NotFound
from vroom_common.schemas import MAX_BATCH_VEHICLES, VehicleFeatures
from vroom_features import FEATURE_NAMES
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.deps import FeaturesDep, PredictorDep
from vroom_gateway.schemas import BatchPredictions, PredictionOut, VehicleIdRequest

router = APIRouter(tags=["predict"])


def _outputs(prediction: Prediction) -> list[PredictionOut]:
    return [
        PredictionOut(
            predicted_reservations=round(value, 2), model_version=prediction.model_version
        )
        for value in prediction.values
    ]


@router.post("/predict")
async def predict(
    vehicle: VehicleFeatures, features: FeaturesDep, predictor: PredictorDep
) -> PredictionOut:
    """Predicted reservations for one vehicle's raw attributes."""
    matrix = await features.compute([vehicle])
    return _outputs(await predictor.predict(matrix))[0]


@router.post("/predict/batch")
async def predict_batch(
    vehicles: Annotated[
        list[VehicleFeatures],
        Body(
            max_length=MAX_BATCH_VEHICLES,
            description=f"0 to {MAX_BATCH_VEHICLES} vehicles' raw attributes.",
        ),
    ],
    features: FeaturesDep,
    predictor: PredictorDep,
) -> BatchPredictions:
    """Predictions for up to 1000 vehicles, in the order given."""
    if not vehicles:
        return BatchPredictions(predictions=[])
    matrix = await features.compute(vehicles)
    return BatchPredictions(predictions=_outputs(await predictor.predict(matrix)))


@router.post("/predict/id")
async def predict_by_id(
    body: VehicleIdRequest, features: FeaturesDep, predictor: PredictorDep
) -> PredictionOut:
    """Predicted reservations for a known vehicle, from its online-store features."""
    online = await features.online([body.vehicle_id])
    if not online.found:
        raise NotFound(f"vehicle {body.vehicle_id} not found")
    row = online.found[0]
    matrix = np.asarray([[float(getattr(row, name)) for name in FEATURE_NAMES]], dtype=np.float32)
    return _outputs(await predictor.predict(matrix))[0]
