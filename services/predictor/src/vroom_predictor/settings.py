"""The predictor's own settings: its drift window (docs/observability.md)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from vroom_common.settings import Settings
from vroom_predictor.drift import DRIFT_MIN_ROWS, DRIFT_WINDOW_ROWS


class PredictorSettings(Settings):
    """The shared settings and the predictor's own."""

    drift_window_rows: int = Field(
        default=DRIFT_WINDOW_ROWS,
        ge=100,
        le=1_000_000,
        description="Live rows kept per served model and compared with its training distribution.",
    )
    drift_min_rows: int = Field(
        default=DRIFT_MIN_ROWS,
        ge=10,
        description="Rows the window needs before drift is scored (fewer: no score yet).",
    )


@lru_cache(maxsize=1)
def get_predictor_settings() -> PredictorSettings:
    """The predictor process's settings, read from the environment once."""
    return PredictorSettings()
