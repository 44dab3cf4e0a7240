"""Roll the champion model out to the serving side.

``make_rollout(settings)`` picks the backend from ``settings.rollout_backend``:

- ``none``: nothing to roll out to (the result says ``skipped``);
- ``local``: the running predictor reloads the champion in place (``LocalRollout``);
- ``kubernetes``: the KServe InferenceService is patched to the champion's artifact
  location (``vroom_rollout.kubernetes.KubernetesRollout``).

Every backend rolls out the CURRENT champion, whatever triggered it, so ``vroom
promote``, ``vroom rollout`` and the gateway's ``/reload`` share one code path;
``as_promotion_hook`` adapts a rollout to ``promote``'s hook.
"""

from __future__ import annotations

import structlog

from vroom_common.errors import VroomError
from vroom_common.events import ModelPromoted
from vroom_rollout.base import (
    BackendName,
    Rollout,
    RolloutFailed,
    RolloutResult,
    RolloutStatus,
    RolloutTimeout,
)
from vroom_rollout.local import LocalRollout
from vroom_rollout.settings import RolloutSettings

__all__ = [
    "BackendName",
    "LocalRollout",
    "NoRollout",
    "PromotionHook",
    "Rollout",
    "RolloutFailed",
    "RolloutResult",
    "RolloutStatus",
    "RolloutTimeout",
    "as_promotion_hook",
    "make_rollout",
]

log = structlog.get_logger(__name__)


class NoRollout:
    """``rollout_backend = none``: promotion only moves the alias."""

    backend: BackendName = "none"

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings

    def rollout(self, promoted: ModelPromoted | None = None) -> RolloutResult:  # noqa: ARG002
        log.info("rollout skipped", model_name=self.settings.model_name, rollout_backend="none")
        return RolloutResult(
            backend=self.backend,
            status="skipped",
            model_name=self.settings.model_name,
            version=None,
            detail="rollout_backend is 'none': nothing was told to load the champion",
        )


def make_rollout(settings: RolloutSettings) -> Rollout:
    """The rollout of the configured backend (nothing is contacted until ``rollout()``)."""
    if settings.rollout_backend == "none":
        return NoRollout(settings)
    if settings.rollout_backend == "local":
        return LocalRollout(settings)
    # The kubernetes client and MLflow take a second or more to import: only when used.
    from vroom_rollout.kubernetes import KubernetesRollout  # noqa: PLC0415

    return KubernetesRollout(settings)


class PromotionHook:
    """``promote``'s rollout hook: rolls out the champion once per promotion.

    A rollout error does not undo or hide the promotion (the alias already moved): by
    default it is logged and kept in ``error`` for the caller to report, and ``promote``
    returns normally. With ``raise_errors=True`` it propagates instead.
    """

    def __init__(self, rollout: Rollout, *, raise_errors: bool = False) -> None:
        self.rollout = rollout
        self.raise_errors = raise_errors
        self.result: RolloutResult | None = None
        self.error: VroomError | None = None

    def __call__(self, event: ModelPromoted) -> None:
        # The rollout still looks the champion up itself; the event lets a serving side
        # that already follows promotions be waited for instead of told again.
        self.result, self.error = None, None
        try:
            self.result = self.rollout.rollout(event)
        except VroomError as exc:
            log.error(
                "rollout after promotion failed",
                backend=self.rollout.backend,
                version=event.version,
                error=exc.message,
            )
            if self.raise_errors:
                raise
            self.error = exc


def as_promotion_hook(rollout: Rollout, *, raise_errors: bool = False) -> PromotionHook:
    """Adapt ``rollout`` to ``promote(settings, rollout=...)`` (a ``ModelPromoted`` callback)."""
    return PromotionHook(rollout, raise_errors=raise_errors)
