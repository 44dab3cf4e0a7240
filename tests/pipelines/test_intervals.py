"""Prediction intervals (``vroom_pipelines.intervals``): coverage on held-out data,
adaptive widths, the count's bounds, and the served ONNX graph against sklearn."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import ExtraTreesRegressor

from vroom_features import compute_features
from vroom_features.contract import (
    INPUT_NAME,
    INTERVAL_LEVELS,
    INTERVAL_LOWER_NAME,
    INTERVAL_UPPER_NAME,
    OUTPUT_NAME,
)
from vroom_pipelines.intervals import IntervalForecaster, conformal_quantile, fit_interval_model
from vroom_pipelines.train import export_onnx


def fleet(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Overdispersed counts whose spread grows with ``num_images`` (heteroscedastic)."""
    rng = np.random.default_rng(seed)
    recommended = np.round(rng.uniform(40, 90, n), 0)
    raw = pd.DataFrame(
        {
            "technology": rng.integers(0, 2, n),
            "actual_price": np.round(recommended + rng.normal(0, 15, n).clip(-35, None), 2),
            "recommended_price": recommended,
            "num_images": rng.integers(0, 20, n),
            "street_parked": rng.integers(0, 2, n),
            "description": rng.integers(0, 500, n),
        }
    )
    x = compute_features(raw)
    mean = np.exp(1.0 + 0.08 * x["num_images"] - 0.03 * x["price_diff"].clip(-30, 30))
    dispersion = 2.0
    y = rng.negative_binomial(dispersion, dispersion / (dispersion + mean)).astype(float)
    return x, y


Trained = tuple[IntervalForecaster, pd.DataFrame, np.ndarray]


def point_model() -> ExtraTreesRegressor:
    return ExtraTreesRegressor(
        n_estimators=60, min_samples_leaf=25, max_features=1.0, random_state=0, n_jobs=1
    )


@pytest.fixture(scope="module")
def trained() -> Trained:
    x, y = fleet(3000, seed=1)
    model = fit_interval_model(point_model, x, y)
    held_out_x, held_out_y = fleet(6000, seed=2)
    return model, held_out_x, held_out_y


def test_coverage_on_held_out_vehicles_matches_each_level(trained: Trained) -> None:
    model, x, y = trained
    lower, upper = model.predict_interval(x)
    covered = ((lower <= y[:, None]) & (y[:, None] <= upper)).mean(axis=0)
    for level, got in zip(INTERVAL_LEVELS, covered, strict=True):
        assert abs(got - level) <= 0.025, (level, got)


def test_intervals_contain_the_point_and_respect_a_count(trained: Trained) -> None:
    model, x, _y = trained
    point = model.predict(x)
    lower, upper = model.predict_interval(x)
    assert (lower >= 0).all()
    assert (lower <= point[:, None] + 1e-9).all()
    assert (point[:, None] <= upper + 1e-9).all()
    widths = upper - lower
    assert (np.diff(widths, axis=1) >= -1e-9).all()  # a higher level is never narrower


def test_widths_adapt_to_the_vehicle(trained: Trained) -> None:
    """Wider where the counts spread more (many images): not one constant band."""
    model, x, _y = trained
    lower, upper = model.predict_interval(x)
    width = (upper - lower)[:, INTERVAL_LEVELS.index(0.8)]
    few, many = x["num_images"] <= 3, x["num_images"] >= 16
    assert width[many].mean() > 1.5 * width[few].mean()


def test_conformal_quantile_uses_the_finite_sample_rank() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores: rank ceil(20 * 0.9) = 18
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(scores, 0.999) == 19.0  # capped at the largest
    assert conformal_quantile(-scores, 0.5) == 0.0  # never below 0: contains the point


def test_served_graph_matches_sklearn_for_points_and_bounds() -> None:
    x, y = fleet(800, seed=3)
    model = fit_interval_model(point_model, x, y, point=clone(point_model()).fit(x, y))
    proto, diff = export_onnx(model, x)
    assert diff < 1e-4
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [
        OUTPUT_NAME,
        INTERVAL_LOWER_NAME,
        INTERVAL_UPPER_NAME,
    ]
    rows = fleet(300, seed=4)[0].astype(np.float32)
    point, lower, upper = session.run(None, {INPUT_NAME: rows.to_numpy()})
    want_lower, want_upper = model.predict_interval(rows)
    np.testing.assert_allclose(point.ravel(), model.predict(rows), atol=1e-4)
    np.testing.assert_allclose(lower, want_lower, atol=1e-4)
    np.testing.assert_allclose(upper, want_upper, atol=1e-4)
    assert lower.shape == (300, len(INTERVAL_LEVELS))
