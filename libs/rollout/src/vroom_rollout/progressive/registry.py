"""What a rollout changes in the MLflow registry: the ``rollout`` and ``champion``
aliases and the version tags that record the outcome.

MLflow's client retries for minutes against a server that is down: every call here is
preceded by the health pre-check, so a rollout step fails fast and is retried by the
controller on its next tick.
"""

from __future__ import annotations

import importlib
from typing import Final

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vroom_common.errors import DependencyUnavailable, NotFound
from vroom_common.events import ModelPromoted
from vroom_common.registry import (
    ALIAS_CHAMPION,
    ALIAS_ROLLOUT,
    PROMOTION_METRIC,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
    TAG_ROLLBACK_REASON,
)
from vroom_common.settings import Settings
from vroom_rollout.champion import check_mlflow

_MISSING: Final = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class RolloutRegistry:
    """The registered model ``settings.model_name``, as a rollout sees it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.model_name
        self.client = MlflowClient(settings.mlflow_uri)
        # MLflow loads its request-header plugins on a process's first request; Feast
        # registers one, so that request would import all of Feast: seconds of CPU, and
        # 15 s on a loaded machine, longer than a rollout request waits for its answer.
        # Paid here, when the controller starts, instead.
        importlib.import_module("mlflow.tracking.request_header.registry")

    def _unavailable(self, exc: MlflowException) -> DependencyUnavailable:
        return DependencyUnavailable("mlflow", f"{self.settings.mlflow_uri}: {exc.message}")

    def alias(self, alias: str) -> str | None:
        """The version ``alias`` points at, ``None`` when it points nowhere."""
        check_mlflow(self.settings)
        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as exc:
            if exc.error_code in _MISSING:
                return None
            raise self._unavailable(exc) from exc

    def champion(self) -> str | None:
        return self.alias(ALIAS_CHAMPION)

    def require_version(self, version: str) -> None:
        """Raise ``NotFound`` unless ``version`` is a registered version of the model."""
        check_mlflow(self.settings)
        try:
            self.client.get_model_version(self.name, version)
        except MlflowException as exc:
            if exc.error_code in _MISSING:
                raise NotFound(f"model {self.name!r} has no version {version}") from exc
            raise self._unavailable(exc) from exc

    def point(self, alias: str, version: str) -> None:
        check_mlflow(self.settings)
        try:
            self.client.set_registered_model_alias(self.name, alias, version)
        except MlflowException as exc:
            raise self._unavailable(exc) from exc

    def clear(self, alias: str) -> None:
        """Remove ``alias`` (already gone is fine)."""
        check_mlflow(self.settings)
        try:
            self.client.delete_registered_model_alias(self.name, alias)
        except MlflowException as exc:
            if exc.error_code not in _MISSING:
                raise self._unavailable(exc) from exc

    def tag(self, version: str, key: str, value: str) -> None:
        check_mlflow(self.settings)
        try:
            self.client.set_model_version_tag(self.name, version, key, value)
        except MlflowException as exc:
            raise self._unavailable(exc) from exc

    # --- what a rollout does ------------------------------------------------------------------

    def stage_candidate(self, version: str) -> None:
        self.require_version(version)
        self.point(ALIAS_ROLLOUT, version)

    def make_champion(self, version: str, previous: str | None, reason: str) -> ModelPromoted:
        """Move the champion alias to ``version``; the ``model-promoted`` event to announce."""
        self.point(ALIAS_CHAMPION, version)
        self.tag(version, TAG_PROMOTION, "champion")
        self.tag(version, TAG_PROMOTION_REASON, reason)
        found = self.client.get_model_version(self.name, version)
        run_id = str(found.run_id or "")
        metrics = self.client.get_run(run_id).data.metrics if run_id else {}
        return ModelPromoted(
            model_name=self.name,
            version=version,
            run_id=run_id,
            cv_mae_mean=metrics.get(PROMOTION_METRIC),
            previous_version=previous,
        )

    def record_rollback(self, version: str, reason: str) -> None:
        self.tag(version, TAG_PROMOTION, "rolled-back")
        self.tag(version, TAG_ROLLBACK_REASON, reason[:5000])
