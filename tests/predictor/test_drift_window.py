"""The predictor's drift window: the last rows answered, whatever the batch sizes."""

from __future__ import annotations

import numpy as np

from vroom_features import FEATURE_NAMES
from vroom_predictor.drift import DriftWindow

WIDTH = len(FEATURE_NAMES)


def _rows(start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(start, start + n, dtype=np.float32)
    return np.repeat(ids[:, None], WIDTH, axis=1), ids


def test_the_window_keeps_the_last_rows_across_the_wrap() -> None:
    window = DriftWindow(10)
    for start in range(0, 23, 3):  # batches of 3 rows: ids 0..23
        window.observe(*_rows(start, 3))
    rows, predictions = window.snapshot()
    assert window.rows == 10
    assert sorted(predictions.tolist()) == list(range(14, 24))
    assert (rows[:, 0] == predictions).all()


def test_a_batch_larger_than_the_window_leaves_its_last_rows() -> None:
    window = DriftWindow(5)
    window.observe(*_rows(0, 2))
    window.observe(*_rows(100, 12))
    _, predictions = window.snapshot()
    assert sorted(predictions.tolist()) == list(range(107, 112))


def test_an_empty_request_changes_nothing() -> None:
    window = DriftWindow(5)
    window.observe(*_rows(0, 0))
    assert window.rows == 0
    assert window.snapshot()[1].size == 0
