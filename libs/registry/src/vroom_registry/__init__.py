"""The model registry (MLflow): its facts and the one adapter every component uses."""

from vroom_registry.client import ModelRegistry, RunInfo, Version
from vroom_registry.facts import (
    ALIAS_CANDIDATE,
    ALIAS_CHAMPION,
    ALIAS_ROLLOUT,
    CANDIDATE_SUFFIX,
    MODEL_ARTIFACT_PATH,
    PROMOTION_METRIC,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
    TAG_ROLLBACK_REASON,
    candidate_name,
)

__all__ = [
    "ALIAS_CANDIDATE",
    "ALIAS_CHAMPION",
    "ALIAS_ROLLOUT",
    "CANDIDATE_SUFFIX",
    "MODEL_ARTIFACT_PATH",
    "PROMOTION_METRIC",
    "TAG_PROMOTION",
    "TAG_PROMOTION_REASON",
    "TAG_ROLLBACK_REASON",
    "ModelRegistry",
    "RunInfo",
    "Version",
    "candidate_name",
]
