"""``vroom rollout start/status/promote/abort`` against a controller running on a real
Redis (its serving side and registry are stand-ins: the CLI only talks to Redis)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.pipelines.test_promote import candidate_with_score
from tests.rollout.conftest import FakePredictor, Invoke
from tests.rollout.stand_ins import RecordingRegistry, ScriptedDeployer
from vroom_rollout.progressive.controller import Controller
from vroom_rollout.progressive.store import RolloutStore
from vroom_rollout.settings import RolloutSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def controller(
    isolated_settings: RolloutSettings, redis_client: redis.Redis
) -> Iterator[tuple[ScriptedDeployer, RecordingRegistry]]:
    """A controller of ``isolated_settings.model_name`` in a thread, for the test."""
    settings = isolated_settings.with_overrides(rollout_tick_s=0.02, rollout_lease_ttl_s=1.0)
    deployer, registry = ScriptedDeployer(), RecordingRegistry()
    running = Controller(
        settings,
        RolloutStore(redis_client, settings.model_name),
        deployer,
        registry,  # type: ignore[arg-type]
        owner="cli-test",
    )
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    yield deployer, registry
    stop.set()
    thread.join(timeout=10)


def test_start_status_and_abort_from_the_command_line(
    controller: tuple[ScriptedDeployer, RecordingRegistry], cli: Invoke
) -> None:
    deployer, registry = controller

    started = cli("rollout", "start", "--version", "2", "--steps", "20,60", "--shadow-seconds", "0")
    assert started.exit_code == 0, started.output
    assert "v2" in started.output
    assert "20% -> 60%" in started.output
    assert registry.aliases["rollout"] == "2"

    status = cli("rollout", "status", "--once")
    assert status.exit_code == 0, status.output
    assert "canary" in status.output  # no shadow: straight to the first canary step
    assert "20%" in status.output
    assert "cli-test" in status.output  # the lease holder

    again = cli("rollout", "start", "3")
    assert again.exit_code == 1
    assert "rollout start refused: a rollout of v2 is canary" in again.output

    aborted = cli("rollout", "abort", "--reason", "enough")
    assert aborted.exit_code == 0, aborted.output
    assert "rolled_back" in aborted.output
    assert "aborted by vroom rollout: enough" in aborted.output
    assert registry.aliases["champion"] == "1"
    assert ("deploy_candidate", "2") in deployer.calls

    nothing = cli("rollout", "promote")
    assert nothing.exit_code == 1
    assert "no rollout of" in nothing.output
    assert "is in progress" in nothing.output


def test_steps_and_version_are_checked_before_anything_is_sent(
    cli: Invoke, redis_client: redis.Redis
) -> None:
    result = cli("rollout", "start", "2", "--steps", "50,10")
    assert result.exit_code == 2
    assert "--steps" in result.output
    assert "must increase strictly" in result.output
    for args in ([], ["2", "--version", "3"]):
        result = cli("rollout", "start", *args)
        assert result.exit_code == 2, args
        assert "give the version once" in result.output
    assert redis_client.keys("*") == []  # no request was queued


def test_vroom_promote_starts_a_rollout_and_says_how_to_follow_it(
    isolated_settings: RolloutSettings,
    controller: tuple[ScriptedDeployer, RecordingRegistry],
    cli: Invoke,
    make_fake_predictor: Callable[..., FakePredictor],
) -> None:
    _deployer, registry = controller
    fake = make_fake_predictor(isolated_settings.model_name)
    env = {"VROOM_ROLLOUT_BACKEND": "local", "VROOM_PREDICTOR_URL": fake.url}
    first = candidate_with_score(isolated_settings, 3.5)
    assert first == registry.champion()  # the stand-in registry starts at v1 too

    promoted = cli("promote", **env)
    assert promoted.exit_code == 0, promoted.output
    assert "promoted" in promoted.output  # the first model goes live at once
    assert "progressive rollout" not in promoted.output

    second = candidate_with_score(isolated_settings, 3.4)
    started = cli("promote", **env)
    assert started.exit_code == 0, started.output
    assert "rollout-started" in started.output
    text = re.sub(r"[\s│]+", " ", started.output)  # the table wraps its cells
    assert "progressive rollout" in text
    assert "follow it with `vroom rollout status` or GET /rollout" in text
    assert registry.aliases["rollout"] == second
