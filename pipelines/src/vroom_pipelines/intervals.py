"""Prediction intervals: split-conformal, normalized by a learned scale, calibrated on
out-of-fold predictions so they hold for vehicles the model has not seen.

How an interval is made (docs/model.md, "Prediction intervals"):

1. Out-of-fold point predictions ``ŷ`` for every training row (each row predicted by
   a model that did not see it).
2. A *scale* model ``sigma(x)`` learns the size of those out-of-fold errors ``|y - ŷ|``
   from the features, so intervals are wider where the model is less sure. For the
   calibration scores it is itself cross-fitted (a row's scale comes from a scale
   model that did not see that row).
3. Scores ``(ŷ - y) / sigma`` and ``(y - ŷ) / sigma``; for each level ``L`` the conformal
   quantiles (finite-sample rank ``⌈(n + 1)(1 - alpha/2)⌉``, ``alpha = 1 - L``) of each side
   give ``q_lo`` and ``q_hi``: the two sides are calibrated apart because a count is
   skewed (a long upper tail).
4. Interval: ``[max(0, ŷ - q_lo sigma), ŷ + q_hi sigma]``; it always contains ``ŷ``.

The served ONNX graph computes the point prediction, the scale and both bounds for
every level in one inference (:func:`interval_graph`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.model_selection import KFold

from vroom_features.contract import (
    INTERVAL_LEVELS,
    INTERVAL_LOWER_NAME,
    INTERVAL_UPPER_NAME,
    N_FEATURES,
    OUTPUT_NAME,
)

#: Smallest scale used: keeps scores finite where the scale model predicts ~0.
SCALE_FLOOR: Final = 0.25
#: Folds of the cross-fitted scale (step 2).
SCALE_FOLDS: Final = 5

Array = npt.NDArray[np.float64]


def scale_model(random_state: int) -> ExtraTreesRegressor:
    """The error-size model: heavily regularized (an error is noisier than a count)."""
    return ExtraTreesRegressor(
        n_estimators=30,  # a rough size is enough; keeps the graph's cost small
        max_features=1.0,
        min_samples_leaf=60,
        random_state=random_state,
        n_jobs=1,
    )


@dataclass(frozen=True)
class Calibration:
    """Conformal quantiles per level (``levels`` order) and the scale floor."""

    levels: tuple[float, ...]
    q_lower: tuple[float, ...]
    q_upper: tuple[float, ...]
    scale_floor: float = SCALE_FLOOR
    n_calibration: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def conformal_quantile(scores: Array, coverage: float) -> float:
    """The ``⌈(n + 1) coverage⌉``-th smallest score (>= 0: an interval contains ŷ)."""
    n = len(scores)
    rank = min(n, math.ceil((n + 1) * coverage))
    return max(0.0, float(np.sort(scores)[rank - 1]))


def calibrate(
    x: pd.DataFrame,
    y: Array,
    oof: Array,
    levels: Sequence[float] = INTERVAL_LEVELS,
    random_state: int = 42,
) -> tuple[ExtraTreesRegressor, Calibration]:
    """The fitted scale model and the quantiles, from out-of-fold predictions ``oof``."""
    y, oof = np.asarray(y, dtype=np.float64), np.asarray(oof, dtype=np.float64)
    error = np.abs(y - oof)
    sigma = np.empty_like(error)
    folds = KFold(SCALE_FOLDS, shuffle=True, random_state=random_state)
    for fit_rows, score_rows in folds.split(x):
        model = scale_model(random_state).fit(x.iloc[fit_rows], error[fit_rows])
        sigma[score_rows] = model.predict(x.iloc[score_rows])
    sigma = np.maximum(sigma, SCALE_FLOOR)
    below, above = (oof - y) / sigma, (y - oof) / sigma
    q_lower = tuple(conformal_quantile(below, 1 - (1 - level) / 2) for level in levels)
    q_upper = tuple(conformal_quantile(above, 1 - (1 - level) / 2) for level in levels)
    final = scale_model(random_state).fit(x, error)
    return final, Calibration(tuple(levels), q_lower, q_upper, SCALE_FLOOR, len(y))


def bounds(point: Array, sigma: Array, calibration: Calibration) -> tuple[Array, Array]:
    """Lower and upper bounds, ``[N, levels]``, as the served graph computes them."""
    point = np.asarray(point, dtype=np.float64).reshape(-1, 1)
    sigma = np.maximum(np.asarray(sigma, dtype=np.float64).reshape(-1, 1), calibration.scale_floor)
    lower = np.maximum(point - sigma * np.asarray(calibration.q_lower), 0.0)
    upper = point + sigma * np.asarray(calibration.q_upper)
    return lower, upper


class IntervalForecaster(BaseEstimator, RegressorMixin):  # type: ignore[misc]
    """The trained model as one sklearn object: the point model, the scale model and
    the calibration. ``predict`` is the point prediction (MLflow's sklearn flavour);
    :meth:`predict_interval` the bounds. Both take a frame holding at least the
    model's :attr:`features` (others are ignored)."""

    def __init__(self, point: Any, scale: ExtraTreesRegressor, calibration: Calibration) -> None:
        self.point = point
        self.scale = scale
        self.calibration = calibration

    @property
    def features(self) -> tuple[str, ...]:
        """The columns the model was fit on, in order."""
        return tuple(self.point.feature_names_in_)

    def predict(self, x: pd.DataFrame) -> Array:
        return np.asarray(self.point.predict(x[list(self.features)]), dtype=np.float64)

    def predict_interval(self, x: pd.DataFrame) -> tuple[Array, Array]:
        columns = x[list(self.features)]
        point = np.asarray(self.point.predict(columns), dtype=np.float64)
        return bounds(point, self.scale.predict(columns), self.calibration)


@dataclass(frozen=True)
class CoverageReport:
    """Held-out coverage and mean width per level (fractions; width in reservations)."""

    levels: tuple[float, ...]
    coverage: tuple[float, ...]
    width: tuple[float, ...]
    n: int

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for level, covered, width in zip(self.levels, self.coverage, self.width, strict=True):
            out[f"interval_coverage_{level:g}"] = covered
            out[f"interval_width_{level:g}"] = width
        return out


def pooled_coverage(
    y: Array,
    folds: Iterable[tuple[Any, Array, Array]],
    levels: Sequence[float] = INTERVAL_LEVELS,
) -> CoverageReport:
    """Coverage and mean width of held-out bounds, pooled over folds given as
    ``(test_rows, lower, upper)``; each fold's bounds come from intervals built on its
    training rows only (the whole procedure, calibration included)."""
    y = np.asarray(y, dtype=np.float64)
    covered = np.zeros(len(levels))
    widths = np.zeros(len(levels))
    total = 0
    for test_rows, lower, upper in folds:
        truth = y[test_rows].reshape(-1, 1)
        covered += ((lower <= truth) & (truth <= upper)).sum(axis=0)
        widths += (upper - lower).sum(axis=0)
        total += len(test_rows)
    return CoverageReport(
        tuple(levels),
        tuple(float(c) for c in covered / total),
        tuple(float(w) for w in widths / total),
        total,
    )


def fit_interval_model(
    make_point: Callable[[], Any],
    x: pd.DataFrame,
    y: Array,
    *,
    folds: int = 5,
    random_state: int = 42,
    point: Any | None = None,
) -> IntervalForecaster:
    """Out-of-fold predictions from ``make_point()`` fits, the calibration, and the
    point model fitted on all rows (``point`` when it is already fitted)."""
    y = np.asarray(y, dtype=np.float64)
    oof = np.empty_like(y)
    for fit_rows, score_rows in KFold(folds, shuffle=True, random_state=random_state).split(x):
        model = clone(make_point()).fit(x.iloc[fit_rows], y[fit_rows])
        oof[score_rows] = model.predict(x.iloc[score_rows])
    scale, calibration = calibrate(x, y, oof, random_state=random_state)
    fitted = point if point is not None else clone(make_point()).fit(x, y)
    return IntervalForecaster(fitted, scale, calibration)


# --- the served graph ------------------------------------------------------------------------


def _const(name: str, values: Sequence[float], shape: Sequence[int]) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32).reshape(shape), name)


def _rewired(nodes: Iterable[onnx.NodeProto], renamed: dict[str, str]) -> list[onnx.NodeProto]:
    """Copies of ``nodes`` reading ``renamed[name]`` wherever they read ``name``."""
    copies = []
    for node in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [renamed.get(name, name) for name in node.input]
        copies.append(copy)
    return copies


def interval_graph(
    point: onnx.ModelProto,
    scale: onnx.ModelProto,
    calibration: Calibration,
    columns: Sequence[int] | None = None,
) -> onnx.ModelProto:
    """One graph from the point and scale exports (same input): outputs the point
    prediction and, per level, the lower and upper bounds (``[N, levels]``).

    With ``columns``, the graph's input is the whole feature vector (``N_FEATURES``
    wide) and the graph picks those columns for the two models, which were fit on them.
    """
    input_name = point.graph.input[0].name
    scale = onnx.compose.add_prefix(scale, "scale_")
    model_input = "model_features" if columns is not None else input_name
    point_nodes = _rewired(point.graph.node, {input_name: model_input})
    scale_nodes = _rewired(scale.graph.node, {f"scale_{input_name}": model_input})
    inputs = list(point.graph.input)
    selection: list[onnx.NodeProto] = []
    selection_constants: list[TensorProto] = []
    if columns is not None:
        inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, N_FEATURES])]
        selection = [
            helper.make_node("Gather", [input_name, "model_columns"], [model_input], axis=1)
        ]
        selection_constants = [
            numpy_helper.from_array(np.asarray(columns, dtype=np.int64), "model_columns")
        ]
    point_out = point.graph.output[0].name
    sigma_raw = scale.graph.output[0].name
    levels = len(calibration.levels)
    constants = [
        _const("interval_q_lower", calibration.q_lower, (1, levels)),
        _const("interval_q_upper", calibration.q_upper, (1, levels)),
        _const("interval_scale_floor", [calibration.scale_floor], (1, 1)),
        _const("interval_zero", [0.0], (1, 1)),
    ]
    nodes = [
        helper.make_node("Max", [sigma_raw, "interval_scale_floor"], ["interval_sigma"]),
        helper.make_node("Mul", ["interval_sigma", "interval_q_lower"], ["interval_down"]),
        helper.make_node("Sub", [point_out, "interval_down"], ["interval_lower_raw"]),
        helper.make_node("Max", ["interval_lower_raw", "interval_zero"], [INTERVAL_LOWER_NAME]),
        helper.make_node("Mul", ["interval_sigma", "interval_q_upper"], ["interval_up"]),
        helper.make_node("Add", [point_out, "interval_up"], [INTERVAL_UPPER_NAME]),
    ]
    bound = [None, levels]
    graph = helper.make_graph(
        [*selection, *point_nodes, *scale_nodes, *nodes],
        "vroom_forecast_with_intervals",
        inputs,
        [
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info(INTERVAL_LOWER_NAME, TensorProto.FLOAT, bound),
            helper.make_tensor_value_info(INTERVAL_UPPER_NAME, TensorProto.FLOAT, bound),
        ],
        [*selection_constants, *point.graph.initializer, *scale.graph.initializer, *constants],
    )
    model = helper.make_model(graph, opset_imports=list(point.opset_import))
    model.ir_version = point.ir_version
    onnx.checker.check_model(model)
    return model
