"""Model evaluation on a data folder, without servers: the figures quoted in the docs.

Compares our model with the Ray Serve version's RandomForest (200 trees, depth 10),
the first wave's ExtraTrees and a median predictor, on 5-fold unshuffled CV (the
training metric's scheme; optimistic on a file sorted by id) and repeated 5x5
shuffled CV; and measures our prediction intervals' coverage and width on the
repeated splits. Each of our splits runs the whole training procedure (point model
and calibration) on its training rows only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.model_selection import GridSearchCV, KFold, RepeatedKFold, cross_val_score

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


#: The first model's five features (SPEC), which the Ray Serve forest was trained on.
FIRST_FEATURES: tuple[str, ...] = FEATURE_NAMES[:5]


def baselines() -> dict[str, tuple[RegressorMixin, tuple[str, ...]]]:
    """The models ours is measured against, each with the features it takes."""
    return {
        "median (no model)": (DummyRegressor(strategy="median"), FIRST_FEATURES),
        "RandomForest 200 trees, depth 10 (Ray Serve)": (
            RandomForestRegressor(n_estimators=200, max_depth=10, random_state=42, n_jobs=1),
            FIRST_FEATURES,
        ),
        "ExtraTrees, 5 features, leaf size searched in-fold (first wave)": (
            GridSearchCV(
                ExtraTreesRegressor(n_estimators=200, max_features=1.0, random_state=42, n_jobs=1),
                {"min_samples_leaf": [15, 25, 40]},
                cv=KFold(3, shuffle=True, random_state=42),
                scoring="neg_mean_absolute_error",
            ),
            FIRST_FEATURES,
        ),
    }


def repeated_splits(x: pd.DataFrame, repeats: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(RepeatedKFold(n_splits=5, n_repeats=repeats, random_state=0).split(x))


@dataclass(frozen=True)
class EvaluationReport:
    models: list[Evaluation]
    intervals: CoverageReport
    """Of our model, on the repeated shuffled splits."""


def evaluate(data_dir: Path, n_jobs: int = 2, repeats: int = 5) -> EvaluationReport:
    """Each baseline and our whole training procedure (nested: calibration in-fold) on
    the same unshuffled and repeated shuffled splits."""
    x, y = training_set(data_dir)
    unshuffled, repeated = list(KFold(5).split(x)), repeated_splits(x, repeats)
    results = []
    for name, (model, columns) in baselines().items():
        started = time.perf_counter()
        scores = [
            -cross_val_score(
                model, x[list(columns)], y, cv=cv, scoring="neg_mean_absolute_error", n_jobs=n_jobs
            )
            for cv in (unshuffled, repeated)
        ]
        results.append(_evaluation(name, scores[0], scores[1], started))
    started = time.perf_counter()
    config = TrainConfig()
    ours_unshuffled, _ = nested_cv(config, x, y, unshuffled, n_jobs)
    ours_repeated, coverage = nested_cv(config, x, y, repeated, n_jobs)
    results.append(
        _evaluation(
            f"ExtraTrees on {', '.join(config.features)}, with intervals (ours)",
            ours_unshuffled,
            ours_repeated,
            started,
        )
    )
    return EvaluationReport(results, coverage)


def _evaluation(name: str, unshuffled: Any, repeated: Any, started: float) -> Evaluation:
    return Evaluation(
        name,
        float(np.mean(unshuffled)),
        float(np.mean(repeated)),
        float(np.std(repeated)),
        time.perf_counter() - started,
    )
