"""What a rollout changes in the MLflow registry: the ``rollout`` and ``champion``
aliases and the version tags that record the outcome.

Every call goes through the registry adapter, so an MLflow outage fails a rollout step
fast (``DependencyUnavailable``) and the controller retries it on its next tick.
"""

from __future__ import annotations

from vroom_common.events import ModelPromoted
from vroom_registry import (
    ALIAS_CHAMPION,
    ALIAS_ROLLOUT,
    PROMOTION_METRIC,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
    TAG_ROLLBACK_REASON,
    ModelRegistry,
)
from vroom_rollout.settings import RolloutSettings


class RolloutRegistry:
    """The registered model ``settings.model_name``, as a rollout sees it."""

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.models = ModelRegistry(settings.mlflow_uri, settings.model_name)
        # Paid when the controller starts, not on a rollout's first request.
        self.models.preload_plugins()

    def alias(self, alias: str) -> str | None:
        """The version ``alias`` points at, ``None`` when it points nowhere."""
        found = self.models.find(alias)
        return found.version if found else None

    def champion(self) -> str | None:
        return self.alias(ALIAS_CHAMPION)

    def require_version(self, version: str) -> None:
        """Raise ``NotFound`` unless ``version`` is a registered version of the model."""
        self.models.version(version)

    def point(self, alias: str, version: str) -> None:
        self.models.point(alias, version)

    def clear(self, alias: str) -> None:
        """Remove ``alias`` (already gone is fine)."""
        self.models.clear(alias)

    # --- what a rollout does ------------------------------------------------------------------

    def stage_candidate(self, version: str) -> None:
        self.require_version(version)
        self.point(ALIAS_ROLLOUT, version)

    def make_champion(self, version: str, previous: str | None, reason: str) -> ModelPromoted:
        """Move the champion alias to ``version``; the ``model-promoted`` event to announce."""
        found = self.models.version(version)
        self.point(ALIAS_CHAMPION, version)
        self.models.tag(version, {TAG_PROMOTION: "champion", TAG_PROMOTION_REASON: reason})
        metrics = self.models.run(found).metrics if found.run_id else {}
        return ModelPromoted(
            model_name=found.model_name,
            version=version,
            run_id=found.run_id or "",
            cv_mae_mean=metrics.get(PROMOTION_METRIC),
            previous_version=previous,
        )

    def record_rollback(self, version: str, reason: str) -> None:
        self.models.tag(version, {TAG_PROMOTION: "rolled-back", TAG_ROLLBACK_REASON: reason})
