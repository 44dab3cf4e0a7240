"""The deployer of the configured rollout backend."""

from __future__ import annotations

from vroom_common.errors import InvalidInput
from vroom_rollout.progressive.controller import Deployer
from vroom_rollout.settings import RolloutSettings


def make_deployer(settings: RolloutSettings) -> Deployer:
    """``local``: one predictor hosting champion and candidate; ``kubernetes``: a second
    InferenceService for the candidate."""
    if settings.rollout_backend == "local":
        from vroom_rollout.local import LocalDeployer  # noqa: PLC0415

        return LocalDeployer(settings)
    if settings.rollout_backend == "kubernetes":
        from vroom_rollout.kubernetes import KubernetesDeployer  # noqa: PLC0415

        return KubernetesDeployer(settings)
    raise InvalidInput(
        "rollout_backend (VROOM_ROLLOUT_BACKEND) is 'none': progressive rollouts need "
        "'local' or 'kubernetes'"
    )
