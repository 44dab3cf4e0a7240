"""The local stack's settings: it runs every component, so it reads all of theirs, and
its supervisor's own."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from vroom_gateway.settings import GatewaySettings
from vroom_pipelines.settings import PipelineSettings
from vroom_predictor.settings import PredictorSettings


class StackSettings(GatewaySettings, PipelineSettings, PredictorSettings):
    """Every component's settings, handed to each service it starts (``as_env``)."""

    supervisor_backoff_s: float = Field(
        default=2.0,
        gt=0,
        description="Local stack: first delay before a service that keeps crashing on start "
        "is started again; it doubles on every further give-up.",
    )
    supervisor_backoff_max_s: float = Field(
        default=60.0, gt=0, description="Local stack: the longest delay between such restarts."
    )


@lru_cache(maxsize=1)
def get_stack_settings() -> StackSettings:
    """The CLI's settings, read from the environment once."""
    return StackSettings()


def stack_settings_for(state_dir: Path | None) -> StackSettings:
    """The CLI's settings, with the state directory of ``--state-dir`` when given."""
    settings = get_stack_settings()
    return settings if state_dir is None else settings.with_overrides(state_dir=state_dir)
