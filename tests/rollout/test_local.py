"""The local rollout against a fake predictor speaking KServe's repository extension."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from tests.rollout.conftest import FakePredictor
from vroom_common.errors import DependencyUnavailable, NotFound
from vroom_common.settings import Settings
from vroom_rollout import LocalRollout, NoRollout, RolloutFailed, make_rollout

MakeFakePredictor = Callable[..., FakePredictor]
MODEL = "vroom forecast/β"  # a name that needs quoting in a path


def settings_for(fake: FakePredictor, name: str = MODEL) -> Settings:
    return Settings(rollout_backend="local", predictor_url=fake.url, model_name=name)


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
    settings = Settings(predictor_url=f"http://127.0.0.1:{port}")
    with pytest.raises(DependencyUnavailable) as caught:
        LocalRollout(settings).rollout()
    assert caught.value.dependency == "predictor"
    assert f"POST http://127.0.0.1:{port}/v2/repository/models/vroom-forecast/load" in (
        caught.value.message
    )


def test_backend_none_is_skipped() -> None:
    rollout = make_rollout(Settings(rollout_backend="none"))
    assert isinstance(rollout, NoRollout)
    result = rollout.rollout()
    assert (result.backend, result.status, result.version) == ("none", "skipped", None)
