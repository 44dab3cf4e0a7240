"""The fair comparison behind a promotion (``vroom_pipelines.compare``): both models
refit on the same data and folds, and a paired test that noise does not pass."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.ensemble import ExtraTreesRegressor

from vroom_common.errors import PipelineFailed
from vroom_features import FEATURE_NAMES, compute_features
from vroom_pipelines.compare import Procedure, compare, corrected_t_test, procedure_of
from vroom_pipelines.promote import decide
from vroom_pipelines.train import MODEL_FEATURES, TrainConfig, fit_model


def fleet(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Counts driven by images and the price ratio, overdispersed like the real label."""
    rng = np.random.default_rng(seed)
    recommended = np.round(rng.uniform(35, 90, n), 0)
    raw = pd.DataFrame(
        {
            "technology": rng.integers(0, 2, n),
            "actual_price": np.round(recommended * rng.uniform(0.8, 2.0, n), 2),
            "recommended_price": recommended,
            "num_images": rng.integers(1, 6, n),
            "street_parked": rng.integers(0, 2, n),
            "description": rng.integers(1, 250, n),
        }
    )
    x = compute_features(raw)
    mean = np.exp(1.2 + 0.2 * x["num_images"] - 1.0 * (x["price_ratio"] - 1))
    y = rng.negative_binomial(3.0, 3.0 / (3.0 + mean)).astype(float)
    return x, pd.Series(y, index=x.index)


def forest(features: tuple[str, ...], random_state: int = 42) -> Procedure:
    estimator = ExtraTreesRegressor(
        n_estimators=40, min_samples_leaf=20, max_features=1.0, random_state=random_state
    )
    return Procedure(estimator, features)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    return fleet(600, seed=11)


def test_a_candidate_better_only_by_noise_is_not_better(
    data: tuple[pd.DataFrame, pd.Series],
) -> None:
    """The same procedure with other random trees: per-fold scores differ a little
    either way, and the test does not call that an improvement, whatever the sign."""
    x, y = data
    for seed in (1, 2, 3):
        c = compare(
            forest(MODEL_FEATURES, seed), forest(MODEL_FEATURES), x, y, repeats=3, alpha=0.05
        )
        assert c.mean_difference != 0
        assert abs(c.mean_difference) < 0.05
        assert not c.candidate_better, c.summary()
        assert c.p_value > 0.05
        assert not decide(c.candidate_mae, c.champion_mae + 1.0, c).promote


def test_a_clearly_better_candidate_is_better(data: tuple[pd.DataFrame, pd.Series]) -> None:
    """A champion blind to images and price loses on every fold."""
    x, y = data
    c = compare(forest(MODEL_FEATURES), forest(("technology",)), x, y, repeats=3, alpha=0.05)
    assert c.folds == 15
    assert c.candidate_mae < c.champion_mae - 0.2
    assert c.candidate_better, c.summary()
    assert c.p_value < 1e-4
    decision = decide(c.candidate_mae, c.champion_mae, c)
    assert decision.promote
    assert decision.reason.startswith("better beyond fold noise on the same 15 folds")


def test_the_worse_model_is_never_better(data: tuple[pd.DataFrame, pd.Series]) -> None:
    x, y = data
    c = compare(forest(("technology",)), forest(MODEL_FEATURES), x, y, repeats=2, alpha=0.5)
    assert c.mean_difference > 0
    assert c.p_value > 0.99
    assert not c.candidate_better


def test_both_are_scored_on_the_same_folds(data: tuple[pd.DataFrame, pd.Series]) -> None:
    """The same procedure against itself: identical on every fold, so no evidence."""
    x, y = data
    c = compare(forest(MODEL_FEATURES), forest(MODEL_FEATURES), x, y, repeats=2, alpha=0.05)
    assert (c.mean_difference, c.t_statistic, c.p_value) == (0.0, 0.0, 0.5)
    assert c.candidate_mae == c.champion_mae


def test_the_corrected_t_test_against_its_formula() -> None:
    d = [-0.05, -0.02, -0.04, 0.01, -0.03, -0.06, -0.01, -0.02, -0.04, -0.03]
    t, p = corrected_t_test(d, test_fraction=0.25)
    expected = np.mean(d) / math.sqrt((1 / len(d) + 0.25) * np.var(d, ddof=1))
    assert t == pytest.approx(expected)
    assert p == pytest.approx(stats.t.cdf(expected, len(d) - 1))
    naive = np.mean(d) / (np.std(d, ddof=1) / math.sqrt(len(d)))
    assert abs(t) < abs(naive)  # the correction widens the variance
    assert corrected_t_test([-0.1, -0.1, -0.1], 0.25) == (-math.inf, 0.0)
    assert corrected_t_test([0.2, 0.2], 0.25) == (math.inf, 1.0)
    with pytest.raises(ValueError, match="at least two folds"):
        corrected_t_test([-0.1], 0.25)


def test_procedures_of_new_and_old_models(data: tuple[pd.DataFrame, pd.Series]) -> None:
    x, y = data
    config = TrainConfig(n_estimators=10)
    new = procedure_of(fit_model(config, x, y.to_numpy()))
    assert new.features == MODEL_FEATURES
    assert not hasattr(new.estimator, "estimators_")  # unfitted: refit on today's rows
    assert new.estimator.get_params() == config.estimator().get_params()

    # Before intervals, the sklearn flavour held the forest itself, fit on five columns.
    first_five = list(FEATURE_NAMES[:5])
    old = ExtraTreesRegressor(n_estimators=5, min_samples_leaf=25).fit(x[first_five], y)
    assert procedure_of(old).features == FEATURE_NAMES[:5]
    on_array = ExtraTreesRegressor(n_estimators=5).fit(x[first_five].to_numpy(), y)
    assert procedure_of(on_array).features == FEATURE_NAMES[:5]

    renamed = ExtraTreesRegressor(n_estimators=5).fit(x[first_five].add_suffix("_x"), y)
    with pytest.raises(PipelineFailed, match="the feature list lacks"):
        procedure_of(renamed)
    with pytest.raises(PipelineFailed, match="not a fitted regressor"):
        procedure_of(ExtraTreesRegressor())


def test_a_feature_the_store_lacks_is_a_clear_error(data: tuple[pd.DataFrame, pd.Series]) -> None:
    x, y = data
    with pytest.raises(PipelineFailed, match=r"lacks feature\(s\) \['price_ratio'\]"):
        compare(
            forest(MODEL_FEATURES),
            forest(("technology",)),
            x.drop(columns="price_ratio"),
            y,
            repeats=1,
            alpha=0.05,
        )
