"""The rollout's settings: how a promotion reaches the predictors (docs/rollouts.md).

Read by the components that roll models out (the pipelines' promotion, the rollout
controller) and by the gateway, which routes the candidate's share of traffic.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from vroom_common.settings import DEFAULT_MODEL_NAME, Settings, parse_list


def parse_uri_map(value: Any) -> Any:
    """``{"from": "to"}``, ``["from=to", ...]``, or a string of either (JSON or ``a=b,c=d``)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        value = json.loads(text) if text[0] in "[{" else text.split(",")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        pairs: dict[str, str] = {}
        for item in value:
            source, sep, target = str(item).partition("=")
            if not sep or not source.strip():
                raise ValueError(f"storage_uri_map entry {item!r} is not of the form 'from=to'")
            pairs[source.strip()] = target.strip()
        return pairs
    return value


def check_steps(steps: list[int]) -> list[int]:
    """Canary steps: at least one, each a share of 1..99 percent, strictly increasing
    (100 % is the promotion itself, after the last step)."""
    if not steps:
        raise ValueError("rollout steps: give at least one canary share, e.g. 10,50")
    for share in steps:
        if not 1 <= share <= 99:
            raise ValueError(f"rollout steps: {share} is not a share between 1 and 99 percent")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"rollout steps: {steps} must increase strictly")
    return steps


class RolloutSettings(Settings):
    """The shared settings and the rollout's own."""

    # --- rollout ---------------------------------------------------------------------------
    rollout_backend: Literal["none", "local", "kubernetes"] = "local"
    inference_service_name: str = Field(
        default=DEFAULT_MODEL_NAME, description="The KServe InferenceService the rollout patches."
    )
    storage_uri_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Prefix mapping from MLflow artifact URIs to URIs KServe can read, e.g. "
            '{"mlflow-artifacts:/": "s3://bucket/mlartifacts/"} or ["from=to", ...] '
            "(JSON, or comma-separated from=to pairs, in VROOM_STORAGE_URI_MAP)."
        ),
    )
    rollout_wait_ready: bool = Field(
        default=False, description="Wait until the InferenceService is Ready after a patch."
    )
    rollout_timeout_s: float = Field(
        default=300.0, gt=0, description="Bound on a rollout (predictor reload or Ready wait)."
    )
    local_rollout_follow_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a local rollout after a promotion waits for the predictor to "
        "reload on the model-promoted event by itself before it asks it to (0: ask at once).",
    )

    # --- progressive delivery (docs/rollouts.md) -----------------------------------------
    rollout_strategy: Literal["progressive", "immediate"] = Field(
        default="progressive",
        description="How a promotion reaches users when a champion already serves: shadow "
        "and canary steps gated on live signals, or at once (the first model always goes "
        "live at once).",
    )
    rollout_steps: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [10, 50],
        description="Canary traffic shares (percent, increasing, each 1..99) after shadow; "
        "VROOM_ROLLOUT_STEPS=10,50.",
    )
    rollout_shadow_s: float = Field(
        default=60.0,
        ge=0,
        description="Least time the candidate shadows the champion (0: no shadow phase).",
    )
    rollout_step_s: float = Field(default=60.0, gt=0, description="Least time of a canary step.")
    rollout_min_requests: int = Field(
        default=100, ge=1, description="Candidate requests a step needs before any decision."
    )
    rollout_max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest candidate error rate a step accepts."
    )
    rollout_max_p99_ratio: float = Field(
        default=1.5,
        gt=0,
        description="Candidate p99 latency may be at most this times the champion's "
        "(plus rollout_p99_slack_ms).",
    )
    rollout_p99_slack_ms: float = Field(
        default=10.0,
        ge=0,
        description="Absolute allowance added to the p99 bound, so millisecond noise on a "
        "fast champion is not a breach.",
    )
    rollout_max_disagreement: float = Field(
        default=1.0,
        ge=0,
        description="Highest median |candidate - champion| (reservations) on mirrored requests.",
    )
    rollout_lease_ttl_s: float = Field(
        default=5.0,
        gt=0,
        description="A controller that stops renewing loses the lease after this.",
    )
    rollout_tick_s: float = Field(
        default=0.25, gt=0, description="How often the controller looks at a running rollout."
    )
    candidate_predictor_url: str = Field(
        default="",
        description="REST base URL of the candidate's predictor (default: predictor_url, "
        "the local predictor hosts both).",
    )
    DERIVED_FIELDS: ClassVar[frozenset[str]] = Settings.DERIVED_FIELDS | {"candidate_predictor_url"}

    @field_validator("rollout_steps", mode="before")
    @classmethod
    def _parse_steps(cls, value: Any) -> Any:
        return parse_list(value)

    @field_validator("rollout_steps")
    @classmethod
    def _check_steps(cls, value: list[int]) -> list[int]:
        return check_steps(value)

    @field_validator("storage_uri_map", mode="before")
    @classmethod
    def _storage_uri_map(cls, value: Any) -> Any:
        return parse_uri_map(value)

    @model_validator(mode="after")
    def _derive_candidate(self) -> Self:
        if not self.candidate_predictor_url:
            self.candidate_predictor_url = self.predictor_url
        return self


@lru_cache(maxsize=1)
def get_rollout_settings() -> RolloutSettings:
    """The process-wide rollout settings, read from the environment once."""
    return RolloutSettings()
