"""Champion against candidate on the same current data and the same folds.

A score a model logged when it was trained says how it did on the data of that day.
To compare like with like, both models' procedures (their point estimators, unfitted,
on the features each was trained on) are refit on today's rows over the same repeated
shuffled folds, and the per-fold MAE differences are tested with the corrected
resampled t-test of Nadeau and Bengio (2003): folds of repeated k-fold share most
of their training rows, so the plain paired t-test's variance, ``var/J``, is too
small; the correction adds ``n_test/n_train``. The candidate wins only if it is better
by more than that fold-to-fold noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed  # type: ignore[import-untyped]
from scipy import stats
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import RepeatedKFold

from vroom_common.errors import PipelineFailed
from vroom_features import FEATURE_NAMES
from vroom_features.contract import first_features


@dataclass(frozen=True)
class Procedure:
    """How a model is fit: its point estimator, unfitted, and the features it takes."""

    estimator: Any
    features: tuple[str, ...]


def procedure_of(model: Any) -> Procedure:
    """The procedure of a trained model: an ``IntervalForecaster`` (its point model) or,
    for models trained before intervals, the fitted regressor itself.

    Raises:
        PipelineFailed: the model is not a fitted regressor this project trained.
    """
    point = getattr(model, "point", model)
    names = getattr(point, "feature_names_in_", None)
    if names is not None:
        features = tuple(str(name) for name in names)
    else:  # fit on an array: the first features, in order
        try:
            features = first_features(getattr(point, "n_features_in_", None))
        except ValueError as exc:
            raise PipelineFailed(
                f"{type(point).__name__} is not a fitted regressor of ours: {exc}"
            ) from exc
    unknown = [name for name in features if name not in FEATURE_NAMES]
    if unknown:
        raise PipelineFailed(f"the model takes feature(s) {unknown} the feature list lacks")
    return Procedure(clone(point), features)


@dataclass(frozen=True)
class Comparison:
    """Both models' MAE on the same folds and the test of their difference."""

    candidate_mae: float
    champion_mae: float
    mean_difference: float
    """Candidate minus champion, averaged over folds (negative: candidate better)."""
    t_statistic: float
    p_value: float
    """One-sided: the probability of a difference this negative if neither is better."""
    folds: int
    alpha: float

    @property
    def candidate_better(self) -> bool:
        return self.mean_difference < 0 and self.p_value < self.alpha

    def summary(self) -> str:
        return (
            f"on the same {self.folds} folds of today's data: candidate MAE "
            f"{self.candidate_mae:.4f}, champion {self.champion_mae:.4f} "
            f"(difference {self.mean_difference:+.4f}, corrected t {self.t_statistic:.2f}, "
            f"p {self.p_value:.3f}, {'<' if self.p_value < self.alpha else '>='} "
            f"alpha {self.alpha:g})"
        )

    def metrics(self) -> dict[str, float]:
        """As MLflow metrics of the candidate's run."""
        return {
            "promotion_candidate_mae": self.candidate_mae,
            "promotion_champion_mae": self.champion_mae,
            "promotion_mae_difference": self.mean_difference,
            "promotion_t_statistic": self.t_statistic,
            "promotion_p_value": self.p_value,
            "promotion_folds": float(self.folds),
        }


def corrected_t_test(differences: Sequence[float], test_fraction: float) -> tuple[float, float]:
    """Nadeau-Bengio corrected resampled t statistic of paired per-fold differences and
    its one-sided p-value (small when the differences are credibly negative).

    ``test_fraction`` is ``n_test / n_train`` of one fold. Identical scores on every
    fold give t = 0 and p = 0.5: no evidence either way.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        raise ValueError("a paired test needs at least two folds")
    mean = float(d.mean())
    if np.ptp(d) == 0:  # no spread (the variance of equal floats may not come out 0)
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / math.sqrt((1 / d.size + test_fraction) * float(d.var(ddof=1)))
    return t, float(stats.t.cdf(t, df=d.size - 1))


def _fold_mae(
    procedures: Sequence[Procedure], x: pd.DataFrame, y: np.ndarray, train: Any, test: Any
) -> list[float]:
    scores = []
    for p in procedures:
        columns = list(p.features)
        fitted = clone(p.estimator).fit(x.iloc[train][columns], y[train])
        scores.append(float(mean_absolute_error(y[test], fitted.predict(x.iloc[test][columns]))))
    return scores


def compare(
    candidate: Procedure,
    champion: Procedure,
    x: pd.DataFrame,
    y: pd.Series,
    *,
    repeats: int,
    alpha: float,
    random_state: int = 0,
    n_jobs: int = 1,
) -> Comparison:
    """Refit both procedures on the same ``repeats`` x 5 shuffled folds of ``x``."""
    missing = sorted({*candidate.features, *champion.features} - set(x.columns))
    if missing:
        raise PipelineFailed(f"the offline store lacks feature(s) {missing}: re-materialize")
    target = y.to_numpy(dtype=np.float64)
    splits = list(RepeatedKFold(n_splits=5, n_repeats=repeats, random_state=random_state).split(x))
    scores = np.asarray(
        Parallel(n_jobs=n_jobs)(
            delayed(_fold_mae)((candidate, champion), x, target, train, test)
            for train, test in splits
        )
    )
    differences = scores[:, 0] - scores[:, 1]
    t, p = corrected_t_test(differences, test_fraction=1 / 4)  # 5 folds: 1 part in 4
    return Comparison(
        candidate_mae=float(scores[:, 0].mean()),
        champion_mae=float(scores[:, 1].mean()),
        mean_difference=float(differences.mean()),
        t_statistic=t,
        p_value=p,
        folds=len(splits),
        alpha=alpha,
    )
