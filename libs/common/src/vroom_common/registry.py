"""Facts about the MLflow model registry that every component shares."""

from __future__ import annotations

from typing import Final

#: Alias set by training on the newest version.
ALIAS_CANDIDATE: Final = "candidate"
#: Alias of the version that serves; promotion moves it.
ALIAS_CHAMPION: Final = "champion"
#: The metric promotion compares; lower is better.
PROMOTION_METRIC: Final = "cv_mae_mean"
#: Artifact path of the model inside a training run.
MODEL_ARTIFACT_PATH: Final = "model"
#: Version tag recording the promotion decision and its reason.
TAG_PROMOTION: Final = "promotion"
TAG_PROMOTION_REASON: Final = "promotion_reason"
