"""The model's tensor contract: what goes into the served model and what comes out.

Training exports the serving model with these names; the predictor checks requests
against them and advertises them in its v2 metadata; the gateway builds requests
with them. Change them here and nowhere else.
"""

from __future__ import annotations

from typing import Final

from vroom_features.transforms import FEATURE_NAMES

#: Input tensor: one row per vehicle, every feature, columns in ``FEATURE_NAMES`` order.
#: A served graph takes them all (it picks the ones its model uses itself); a graph
#: narrower than ``N_FEATURES`` is a model trained before the list grew, and the
#: predictor feeds it the first columns (the feature list is append-only).
INPUT_NAME: Final = "features"
#: Open Inference Protocol v2 datatype of the input (tree runtimes compute in float32).
INPUT_DATATYPE: Final = "FP32"
#: Output tensor: the predicted reservation count per row, shape ``[N]``.
OUTPUT_NAME: Final = "predicted_reservations"
OUTPUT_DATATYPE: Final = "FP32"
#: Width of the input tensor.
N_FEATURES: Final = len(FEATURE_NAMES)


def first_features(width: object) -> tuple[str, ...]:
    """The features a model of input ``width`` takes when it names none: the first ones
    (the list is append-only).

    Raises:
        ValueError: ``width`` is not a whole number of 1 to ``N_FEATURES`` features.
    """
    if not isinstance(width, int) or not 1 <= width <= N_FEATURES:
        raise ValueError(f"input width {width!r} is not 1..{N_FEATURES} features")
    return FEATURE_NAMES[:width]


#: File name of the ONNX export inside a logged model's directory.
ONNX_FILE: Final = "model.onnx"
#: File written next to the model after registration: ``{"model_name", "version"}``.
#: A predictor that gets only the directory (KServe's storage initializer on a
#: cluster) learns the version it serves from it.
REGISTRATION_FILE: Final = "registration.json"

#: Prediction intervals: coverage levels calibrated at training, the default one, and
#: the two extra outputs of the served graph, each ``[N, len(INTERVAL_LEVELS)]`` with a
#: column per level in this order (lower bounds are >= 0: a count). A model trained
#: before intervals existed has neither output.
INTERVAL_LEVELS: Final = (0.5, 0.8, 0.9, 0.95)
DEFAULT_INTERVAL_LEVEL: Final = 0.8
INTERVAL_LOWER_NAME: Final = "interval_lower"
INTERVAL_UPPER_NAME: Final = "interval_upper"
#: File of the calibration (levels, conformal quantiles) inside a logged model's directory.
CALIBRATION_FILE: Final = "calibration.json"
