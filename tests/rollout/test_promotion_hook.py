"""Promotion triggers the rollout: once per promotion, never for a retained candidate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis

from tests.pipelines.test_promote import candidate_with_score
from tests.rollout.conftest import FakePredictor, Invoke
from vroom_common.errors import DependencyUnavailable
from vroom_common.events import ModelPromoted
from vroom_pipelines.promote import promote
from vroom_rollout import BackendName, RolloutResult, as_promotion_hook
from vroom_rollout.settings import RolloutSettings

pytestmark = pytest.mark.integration


@dataclass
class CountingRollout:
    """Records each rollout; fails when told to."""

    backend: BackendName = "local"
    calls: int = 0
    fail: bool = False
    results: list[RolloutResult] = field(default_factory=list)
    promoted: list[ModelPromoted | None] = field(default_factory=list)

    def rollout(self, promoted: ModelPromoted | None = None) -> RolloutResult:
        self.calls += 1
        self.promoted.append(promoted)
        if self.fail:
            raise DependencyUnavailable("predictor", "POST http://127.0.0.1:1/...: refused")
        result = RolloutResult(self.backend, "rolled-out", "m", str(self.calls), "ok")
        self.results.append(result)
        return result


def test_promote_rolls_out_once_per_promotion(
    isolated_settings: RolloutSettings, redis_client: redis.Redis
) -> None:
    rollout = CountingRollout()
    hook = as_promotion_hook(rollout)

    first_version = candidate_with_score(isolated_settings, 3.5)
    assert promote(isolated_settings, rollout=hook).outcome == "promoted"
    assert rollout.calls == 1
    assert hook.result == rollout.results[-1]
    # The rollout is handed the promotion it follows (the local predictor's watcher acts
    # on the same event, so the rollout can wait for it instead of reloading again).
    first = rollout.promoted[-1]
    assert first is not None
    assert (first.version, first.previous_version) == (first_version, None)

    candidate_with_score(isolated_settings, 3.6)
    assert promote(isolated_settings, rollout=hook).outcome == "retained"
    assert rollout.calls == 1

    assert promote(isolated_settings, rollout=hook).outcome == "retained"
    assert rollout.calls == 1

    candidate_with_score(isolated_settings, 3.4)
    assert promote(isolated_settings, rollout=hook).outcome == "promoted"
    assert rollout.calls == 2


def test_a_failed_rollout_keeps_the_promotion(
    isolated_settings: RolloutSettings, redis_client: redis.Redis
) -> None:
    rollout = CountingRollout(fail=True)
    hook = as_promotion_hook(rollout)
    version = candidate_with_score(isolated_settings, 3.5)

    result = promote(isolated_settings, rollout=hook)

    assert (result.outcome, result.champion_version) == ("promoted", version)
    assert hook.result is None
    assert isinstance(hook.error, DependencyUnavailable)


def test_raise_errors_propagates_the_rollout_error() -> None:
    hook = as_promotion_hook(CountingRollout(fail=True), raise_errors=True)
    event = ModelPromoted(model_name="m", version="1", run_id="r", cv_mae_mean=1.0)
    with pytest.raises(DependencyUnavailable, match="predictor is unavailable"):
        hook(event)


def test_cli_promote_reports_a_failed_rollout_after_the_promotion(
    isolated_settings: RolloutSettings, redis_client: redis.Redis, cli: Invoke
) -> None:
    version = candidate_with_score(isolated_settings, 3.5)

    result = cli("promote", VROOM_ROLLOUT_BACKEND="local", VROOM_PREDICTOR_URL="http://127.0.0.1:1")

    assert result.exit_code == 1
    output = result.output
    assert "promoted" in output
    assert "local: FAILED" in output
    assert "rollout failed: predictor is unavailable" in output
    assert f"The promotion stands (v{version} is champion)" in output
    assert "vroom rollout" in output


def test_cli_promote_and_rollout_with_the_local_predictor(
    isolated_settings: RolloutSettings,
    redis_client: redis.Redis,
    cli: Invoke,
    make_fake_predictor: Callable[..., FakePredictor],
) -> None:
    fake = make_fake_predictor(isolated_settings.model_name)
    candidate_with_score(isolated_settings, 3.5)
    env = {"VROOM_ROLLOUT_BACKEND": "local", "VROOM_PREDICTOR_URL": fake.url}

    promoted = cli("promote", **env)
    assert promoted.exit_code == 0, promoted.output
    assert "local: rolled-out (v4)" in promoted.output

    again = cli("rollout", **env)
    assert again.exit_code == 0, again.output
    assert "local: unchanged (v4)" in again.output
    loads = [r for r in fake.requests if r[0] == "POST"]
    assert len(loads) == 2


def test_cli_rollout_with_backend_none_is_skipped(cli: Invoke) -> None:
    result = cli("rollout", VROOM_ROLLOUT_BACKEND="none")
    assert result.exit_code == 0
    assert "none: skipped" in result.output
