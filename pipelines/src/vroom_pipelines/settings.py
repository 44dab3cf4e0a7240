"""The pipelines' own settings: training and the promotion's statistical gate
(docs/model.md). A promotion rolls the model out, so the rollout's settings are here too."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from vroom_rollout.settings import RolloutSettings


class PipelineSettings(RolloutSettings):
    """The shared and rollout settings, and those of training and promotion."""

    train_n_jobs: int = Field(default=2, ge=1, description="Processes for cross-validation.")
    promotion_cv_repeats: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Repeats of shuffled 5-fold CV on which a promotion re-scores champion "
        "and candidate side by side.",
    )
    promotion_alpha: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="A candidate is promoted only if its paired per-fold MAE advantage has a "
        "one-sided corrected t-test p-value below this (a progressive rollout then tests "
        "it on live traffic too).",
    )


@lru_cache(maxsize=1)
def get_pipeline_settings() -> PipelineSettings:
    """The pipeline process's settings, read from the environment once."""
    return PipelineSettings()
