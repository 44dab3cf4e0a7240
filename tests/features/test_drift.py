"""The drift reference and its score (vroom_features.drift): bins, PSI, the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vroom_features import FEATURE_NAMES
from vroom_features.drift import (
    DRIFT_ALERT_PSI,
    MAX_CATEGORIES,
    N_BINS,
    PREDICTION,
    Bins,
    Reference,
    psi,
)

RNG = np.random.default_rng(7)


def test_a_continuous_feature_is_binned_by_its_training_deciles() -> None:
    values = RNG.normal(50, 10, 5000)
    bins = Bins.fit(values)
    assert bins.categories == ()
    assert len(bins.edges) == N_BINS - 1
    assert len(bins.shares) == N_BINS
    assert all(share == pytest.approx(0.1, abs=0.01) for share in bins.shares)
    assert bins.labels()[0].startswith("< ")
    assert bins.labels()[-1].startswith(">= ")


def test_a_discrete_feature_is_binned_by_value() -> None:
    values = RNG.choice([0, 1], size=1000, p=[0.7, 0.3])
    bins = Bins.fit(values)
    assert bins.categories == (0.0, 1.0)
    assert bins.shares[0] == pytest.approx(0.7, abs=0.05)
    assert bins.shares[2] == 0.0  # nothing else in training
    # A value the training data never had falls in the "other" bin: drift.
    assert bins.shares_of([0, 1, 2, 2]) == (0.25, 0.25, 0.5)
    assert bins.labels() == ["0", "1", "other"]
    assert bins.psi([5, 5, 5, 0]) > DRIFT_ALERT_PSI


def test_few_distinct_values_stay_categories_up_to_the_limit() -> None:
    assert len(Bins.fit(np.arange(MAX_CATEGORIES)).categories) == MAX_CATEGORIES
    assert Bins.fit(np.arange(MAX_CATEGORIES + 1)).categories == ()


def test_psi_is_near_zero_for_the_same_distribution_and_high_for_a_shift() -> None:
    train = RNG.normal(50, 10, 20_000)
    bins = Bins.fit(train)
    same = bins.psi(RNG.normal(50, 10, 2000))
    shifted = bins.psi(RNG.normal(65, 10, 2000))
    assert same < 0.05
    assert shifted > DRIFT_ALERT_PSI
    # Symmetric in its terms and zero on identical shares.
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.2, 0.8], [0.6, 0.4]) == pytest.approx(psi([0.6, 0.4], [0.2, 0.8]))


def test_an_empty_bin_counts_as_rare_not_infinite() -> None:
    score = psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2])
    assert np.isfinite(score)
    assert score > DRIFT_ALERT_PSI


def test_non_finite_values_are_left_out() -> None:
    bins = Bins.fit([1.0, 2.0, 3.0, np.nan])
    assert sum(bins.shares) == pytest.approx(1.0)
    assert bins.shares_of([np.inf, 1.0]) == bins.shares_of([1.0])
    with pytest.raises(ValueError, match="no finite values"):
        Bins.fit([np.nan])


def _training_matrix(rows: int) -> np.ndarray:
    columns = [RNG.normal(10 + i, 2 + i, rows) for i in range(len(FEATURE_NAMES))]
    matrix = np.column_stack(columns)
    matrix[:, 0] = RNG.choice([0, 1], size=rows)  # one discrete column
    return matrix.astype(np.float32)


def test_the_reference_round_trips_through_its_file(tmp_path: Path) -> None:
    matrix = _training_matrix(3000)
    predictions = RNG.gamma(2.0, 3.0, 3000)
    reference = Reference.fit(matrix, predictions)
    path = tmp_path / "drift_reference.json"
    reference.save(path)
    loaded = Reference.load(path)
    assert loaded == reference
    assert set(loaded.features) == set(FEATURE_NAMES)
    scores = loaded.scores(matrix[:1000], predictions[:1000].astype(np.float32))
    assert set(scores) == {*FEATURE_NAMES, PREDICTION}
    assert max(scores.values()) < 0.05  # the training rows are not drifted


def test_a_shifted_feature_alone_scores_high() -> None:
    matrix = _training_matrix(3000)
    predictions = RNG.gamma(2.0, 3.0, 3000)
    reference = Reference.fit(matrix, predictions)
    live = matrix[:1000].copy()
    shifted = FEATURE_NAMES[2]
    live[:, 2] += 3 * live[:, 2].std()
    scores = reference.scores(live, predictions[:1000].astype(np.float32))
    assert scores[shifted] > DRIFT_ALERT_PSI
    assert all(score < 0.05 for name, score in scores.items() if name != shifted)


@pytest.mark.parametrize(
    "body",
    ["not json", '{"rows": 3}', '{"rows": 3, "features": {}, "prediction": {"shares": [1, 0]}}'],
)
def test_a_file_that_is_no_reference_is_refused_by_path(tmp_path: Path, body: str) -> None:
    path = tmp_path / "drift_reference.json"
    path.write_text(body)
    with pytest.raises(ValueError, match="is not a drift reference"):
        Reference.load(path)


def test_the_reference_needs_every_feature_column() -> None:
    with pytest.raises(ValueError, match=f"expected \\[N, {len(FEATURE_NAMES)}\\]"):
        Reference.fit(np.zeros((10, 2)), np.zeros(10))
