"""What every rollout backend returns and promises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from vroom_common.errors import VroomError
from vroom_common.events import ModelPromoted

RolloutStatus = Literal["rolled-out", "unchanged", "skipped"]
BackendName = Literal["none", "local", "kubernetes"]


@dataclass(frozen=True)
class RolloutResult:
    """The outcome of one rollout of the current champion."""

    backend: BackendName
    status: RolloutStatus
    model_name: str
    version: str | None
    """The version now serving (``None`` when the backend cannot tell)."""
    detail: str
    previous_version: str | None = None
    """The version served before (``None`` when none, or the backend cannot tell)."""


class Rollout(Protocol):
    """Rolls the CURRENT champion out to the serving side.

    Implementations look the champion up themselves (or have the predictor do it); they
    never trust a caller's idea of which version that is, so a late or repeated call
    still converges on what the registry says.
    """

    backend: BackendName

    def rollout(self, promoted: ModelPromoted | None = None) -> RolloutResult:
        """Roll the champion out. ``promoted`` is the promotion that asked for it, when one
        did: a serving side that acts on that event by itself (a local predictor watching
        the models stream) is then waited for rather than told twice."""
        ...


class RolloutFailed(VroomError):
    """The serving side refused or failed the rollout; the message carries its reason."""

    http_status = 502
    grpc_status = "INTERNAL"


class RolloutTimeout(RolloutFailed):
    """The rollout did not finish within ``rollout_timeout_s``."""

    http_status = 504
    grpc_status = "DEADLINE_EXCEEDED"
