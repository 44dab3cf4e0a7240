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
#: Alias of the version a progressive rollout is testing against the champion. Distinct
#: from ``candidate`` (training's newest version): any registered version can be rolled out.
ALIAS_ROLLOUT: Final = "rollout"
#: Version tag recording why a rollout rolled the version back.
TAG_ROLLBACK_REASON: Final = "rollback_reason"
#: Suffix of the served name of the rollout's candidate: the second model of the local
#: predictor, and the second InferenceService on a cluster.
CANDIDATE_SUFFIX: Final = "-candidate"


def candidate_name(name: str) -> str:
    """The served model (or InferenceService) name of a rollout candidate of ``name``."""
    return f"{name}{CANDIDATE_SUFFIX}"
