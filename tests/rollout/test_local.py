"""The local rollout against a fake predictor speaking KServe's repository extension."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from tests.rollout.conftest import FakePredictor
from vroom_common.errors import DependencyUnavailable, NotFound
from vroom_common.events import ModelPromoted
from vroom_rollout import LocalRollout, NoRollout, RolloutFailed, make_rollout
from vroom_rollout.local import LocalDeployer
from vroom_rollout.settings import RolloutSettings

MakeFakePredictor = Callable[..., FakePredictor]
MODEL = "vroom forecast/β"  # a name that needs quoting in a path


def settings_for(fake: FakePredictor, name: str = MODEL, **options: float) -> RolloutSettings:
    return RolloutSettings(
        rollout_backend="local", predictor_url=fake.url, model_name=name, **options
    )


def promoted(version: str = "4", previous: str | None = "3") -> ModelPromoted:
    return ModelPromoted(
        model_name="vroom-forecast", version=version, run_id="r", previous_version=previous
    )


def posts(fake: FakePredictor) -> list[tuple[str, str]]:
    return [r for r in fake.requests if r[0] == "POST"]


def test_a_promotion_the_predictor_follows_is_not_loaded_twice(
    make_fake_predictor: MakeFakePredictor,
) -> None:
    # The predictor's watcher reloads on the model-promoted event a moment later.
    fake = make_fake_predictor("vroom-forecast", versions=["3", "4"])
    threading.Timer(0.3, fake.follow).start()

    result = LocalRollout(settings_for(fake, "vroom-forecast")).rollout(promoted())

    assert posts(fake) == []
    assert (result.status, result.version, result.previous_version) == ("rolled-out", "4", "3")
    assert "followed the promotion" in result.detail


def test_a_promotion_the_predictor_does_not_follow_is_loaded_once(
    make_fake_predictor: MakeFakePredictor,
) -> None:
    # No watcher (or Redis down): after local_rollout_follow_s the rollout asks for the load.
    fake = make_fake_predictor("vroom-forecast", versions=["3", "4"])
    settings = settings_for(fake, "vroom-forecast", local_rollout_follow_s=0.3)

    result = LocalRollout(settings).rollout(promoted())

    assert posts(fake) == [("POST", "/v2/repository/models/vroom-forecast/load")]
    assert (result.status, result.version, result.previous_version) == ("rolled-out", "4", "3")


def test_an_announced_champion_switch_waits_for_the_watcher(
    make_fake_predictor: MakeFakePredictor,
) -> None:
    fake = make_fake_predictor("vroom-forecast", versions=["3", "4"])
    settings = settings_for(fake, "vroom-forecast")
    threading.Timer(0.3, fake.follow).start()

    LocalDeployer(settings).serve_champion("4", announced=True)
    assert posts(fake) == []

    # A switch no event announced (a rollback to the old champion) loads at once.
    LocalDeployer(settings).serve_champion("3")
    assert posts(fake) == [("POST", "/v2/repository/models/vroom-forecast/load")]


def test_local_rollout_posts_the_load_request(make_fake_predictor: MakeFakePredictor) -> None:
    fake = make_fake_predictor("vroom-forecast", versions=["3", "4"])
    rollout = make_rollout(settings_for(fake, "vroom-forecast"))
    assert isinstance(rollout, LocalRollout)

    result = rollout.rollout()

    assert ("POST", "/v2/repository/models/vroom-forecast/load") in fake.requests
    assert [r for r in fake.requests if r[0] == "POST"] == [
        ("POST", "/v2/repository/models/vroom-forecast/load")
    ]
    assert (result.backend, result.status, result.version, result.previous_version) == (
        "local",
        "rolled-out",
        "4",
        "3",
    )


def test_model_name_is_quoted_in_the_path(make_fake_predictor: MakeFakePredictor) -> None:
    fake = make_fake_predictor("vroom%20forecast%2F%CE%B2")
    LocalRollout(settings_for(fake)).rollout()
    assert ("POST", "/v2/repository/models/vroom%20forecast%2F%CE%B2/load") in fake.requests


def test_reload_of_the_same_version_is_unchanged(make_fake_predictor: MakeFakePredictor) -> None:
    fake = make_fake_predictor("vroom-forecast", versions=["4", "4"])
    result = LocalRollout(settings_for(fake, "vroom-forecast")).rollout()
    assert (result.status, result.version, result.previous_version) == ("unchanged", "4", "4")


def test_failed_load_carries_the_predictor_error(make_fake_predictor: MakeFakePredictor) -> None:
    fake = make_fake_predictor(
        "vroom-forecast",
        load_status=500,
        load_body={"error": "champion v9 has no model.onnx"},
    )
    with pytest.raises(RolloutFailed) as caught:
        LocalRollout(settings_for(fake, "vroom-forecast")).rollout()
    assert "HTTP 500" in caught.value.message
    assert "champion v9 has no model.onnx" in caught.value.message


def test_unknown_model_is_not_found(make_fake_predictor: MakeFakePredictor) -> None:
    fake = make_fake_predictor("other-model")
    with pytest.raises(NotFound, match=r"does not serve 'vroom-forecast'.*does not exist"):
        LocalRollout(settings_for(fake, "vroom-forecast")).rollout()


def test_no_predictor_listening_is_dependency_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = RolloutSettings(predictor_url=f"http://127.0.0.1:{port}")
    with pytest.raises(DependencyUnavailable) as caught:
        LocalRollout(settings).rollout()
    assert caught.value.dependency == "predictor"
    assert f"POST http://127.0.0.1:{port}/v2/repository/models/vroom-forecast/load" in (
        caught.value.message
    )


def test_backend_none_is_skipped() -> None:
    rollout = make_rollout(RolloutSettings(rollout_backend="none"))
    assert isinstance(rollout, NoRollout)
    result = rollout.rollout()
    assert (result.backend, result.status, result.version) == ("none", "skipped", None)
