"""Model evaluation on a data folder, without servers: the figures quoted in the docs.

Compares our tuned ExtraTrees (nested CV) with the Ray Serve version's RandomForest
(200 trees, depth 10) and a median predictor, on 5-fold unshuffled CV (the promotion
metric's scheme; optimistic on a file sorted by id) and repeated 5x5 shuffled CV; and
measures the prediction intervals' coverage and width on repeated 5x5 shuffled CV,
each split running the whole training procedure (tuning and calibration) on its
training rows only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import KFold, RepeatedKFold, cross_val_score

from vroom_features import FEATURE_NAMES, compute_features
from vroom_pipelines.intervals import CoverageReport
from vroom_pipelines.seed import load_csv_dir
from vroom_pipelines.train import TrainConfig, nested_cv


@dataclass(frozen=True)
class Evaluation:
    model: str
    unshuffled_5fold_mae: float
    repeated_5x5_mae: float
    repeated_5x5_std: float
    seconds: float


def training_set(data_dir: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Features and reservation counts straight from the CSV files (validated)."""
    fleet = load_csv_dir(data_dir)
    raw = pd.DataFrame(fleet.vehicles).set_index("vehicle_id")
    counts = pd.Series([r["vehicle_id"] for r in fleet.reservations]).value_counts()
    y = counts.reindex(raw.index, fill_value=0).astype("float64")
    return compute_features(raw)[list(FEATURE_NAMES)], y


def candidates(config: TrainConfig) -> dict[str, RegressorMixin]:
    return {
        "median (no model)": DummyRegressor(strategy="median"),
        "RandomForest 200 trees, depth 10 (Ray Serve)": RandomForestRegressor(
            n_estimators=200, max_depth=10, random_state=42, n_jobs=1
        ),
        "ExtraTrees, leaf size tuned in-fold (ours)": config.estimator(),
    }


def evaluate(data_dir: Path, n_jobs: int = 2, repeats: int = 5) -> list[Evaluation]:
    x, y = training_set(data_dir)
    results = []
    for name, model in candidates(TrainConfig()).items():
        started = time.perf_counter()
        unshuffled = -cross_val_score(
            model, x, y, cv=KFold(5), scoring="neg_mean_absolute_error", n_jobs=n_jobs
        )
        repeated = -cross_val_score(
            model,
            x,
            y,
            cv=RepeatedKFold(n_splits=5, n_repeats=repeats, random_state=0),
            scoring="neg_mean_absolute_error",
            n_jobs=n_jobs,
        )
        results.append(
            Evaluation(
                name,
                float(np.mean(unshuffled)),
                float(np.mean(repeated)),
                float(np.std(repeated)),
                time.perf_counter() - started,
            )
        )
    return results


def interval_coverage(data_dir: Path, n_jobs: int = 2, repeats: int = 5) -> CoverageReport:
    """Held-out coverage and width per level over ``repeats`` x 5 shuffled folds."""
    x, y = training_set(data_dir)
    splits = RepeatedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(x)
    return nested_cv(TrainConfig(), x, y, splits, n_jobs)[1]
