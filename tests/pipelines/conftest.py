"""Fixtures for pipeline tests that run against the real Redis and MLflow servers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from vroom_common.settings import Settings


@pytest.fixture
def isolated_settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    """The shared servers, with this test's own state dir, model name and experiment.

    Tests share one Redis and one MLflow; a unique registered model name keeps their
    champions apart, and ``flushdb`` (``redis_client``) keeps their streams apart.
    """
    name = f"vroom-test-{uuid.uuid4().hex[:8]}"
    return stack_settings.with_overrides(
        state_dir=tmp_path / "state", model_name=name, mlflow_experiment=name
    )
