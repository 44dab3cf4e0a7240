"""The registry adapter against the session's real MLflow server, and the one outcome
every component gets from it for "no champion", "alias at a deleted version", "a
version whose run is deleted" and "MLflow down"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import register_model_dir
from vroom_common.errors import DependencyUnavailable, NotFound, VroomError
from vroom_common.settings import Settings
from vroom_gateway.clients.registry import champion_info
from vroom_pipelines.promote import promote
from vroom_predictor.loading import ModelLoadError, NoVersion, RegistrySource
from vroom_registry import ALIAS_CANDIDATE, ALIAS_CHAMPION, ModelRegistry, Version
from vroom_rollout.champion import resolve_champion
from vroom_rollout.progressive.registry import RolloutRegistry

pytestmark = pytest.mark.integration

#: Nothing listens here: an MLflow that is down.
DOWN_URI = "http://127.0.0.1:1"


def models_of(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.mlflow_uri, settings.model_name)


def champion_of(settings: Settings, model_dir: Path) -> Version:
    """A registered version aliased champion, as promotion leaves it."""
    models = models_of(settings)
    found = models.version(register_model_dir(settings, model_dir, score=1.0))
    models.point(ALIAS_CHAMPION, found.version)
    return found


# -- the adapter ---------------------------------------------------------------------------------


def test_lookups_of_a_registered_version(
    isolated_settings: Settings, champion_model_dir: Path
) -> None:
    models = models_of(isolated_settings)
    version = champion_of(isolated_settings, champion_model_dir)

    assert models.find(ALIAS_CHAMPION) == version
    assert models.get(ALIAS_CANDIDATE) == version  # training's alias, set by register
    assert models.version(version.version) == version
    run = models.run(version)
    assert run.run_id == version.run_id
    assert run.metrics["cv_mae_mean"] == 1.0
    assert run.started_at is not None


def test_download_gives_the_model_directory(
    isolated_settings: Settings, champion_model_dir: Path, tmp_path: Path
) -> None:
    version = champion_of(isolated_settings, champion_model_dir)
    path = models_of(isolated_settings).download(version, tmp_path)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        p.name for p in champion_model_dir.iterdir()
    )


def test_no_champion_is_none_or_not_found(isolated_settings: Settings) -> None:
    models = models_of(isolated_settings)
    assert models.find(ALIAS_CHAMPION) is None  # the model is not even registered
    with pytest.raises(
        NotFound, match=rf"'{isolated_settings.model_name}' has no 'champion' version: promote"
    ):
        models.get(ALIAS_CHAMPION, "promote one")
    with pytest.raises(NotFound, match="has no version 7"):
        models.version("7")


def test_an_alias_left_by_a_deleted_version_points_nowhere(
    isolated_settings: Settings, champion_model_dir: Path
) -> None:
    version = champion_of(isolated_settings, champion_model_dir)
    MlflowClient(isolated_settings.mlflow_uri).delete_model_version(
        isolated_settings.model_name, version.version
    )
    models = models_of(isolated_settings)
    assert models.find(ALIAS_CHAMPION) is None
    with pytest.raises(NotFound, match="has no 'champion' version"):
        models.get(ALIAS_CHAMPION)


def test_a_version_whose_run_is_deleted_is_not_found(
    isolated_settings: Settings, champion_model_dir: Path
) -> None:
    version = champion_of(isolated_settings, champion_model_dir)
    assert version.run_id
    MlflowClient(isolated_settings.mlflow_uri).delete_run(version.run_id)
    models = models_of(isolated_settings)
    expected = rf"alias 'champion' .* is v{version.version}, whose training run {version.run_id}"
    with pytest.raises(NotFound, match=expected):
        models.find(ALIAS_CHAMPION)
    with pytest.raises(NotFound, match=f"whose training run {version.run_id} is deleted"):
        models.version(version.version)


def test_changes(isolated_settings: Settings, champion_model_dir: Path) -> None:
    models = models_of(isolated_settings)
    version = champion_of(isolated_settings, champion_model_dir)
    models.tag(version.version, {"promotion": "champion", "reason": "x" * 6000})
    tags = (
        MlflowClient(isolated_settings.mlflow_uri)
        .get_model_version(isolated_settings.model_name, version.version)
        .tags
    )
    assert tags == {"promotion": "champion", "reason": "x" * 5000}
    models.clear(ALIAS_CHAMPION)
    models.clear(ALIAS_CHAMPION)  # already gone is fine
    assert models.find(ALIAS_CHAMPION) is None
    with pytest.raises(NotFound, match="has no version 99"):
        models.point(ALIAS_CHAMPION, "99")
    assert version.run_id
    models.log_metrics(version.run_id, {"rescored_mae": 0.5})
    assert models.run(version).metrics["rescored_mae"] == 0.5


def test_mlflow_down_fails_every_call_fast() -> None:
    models = ModelRegistry(DOWN_URI, "m", health_timeout_s=1.0)
    version = Version("m", "1", "r")
    calls: list[Callable[[], object]] = [
        models.check,
        lambda: models.find(ALIAS_CHAMPION),
        lambda: models.get(ALIAS_CHAMPION),
        lambda: models.version("1"),
        lambda: models.run(version),
        lambda: models.point(ALIAS_CHAMPION, "1"),
        lambda: models.clear(ALIAS_CHAMPION),
        lambda: models.tag("1", {"k": "v"}),
        lambda: models.register("s3://x/model", "r"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(
            DependencyUnavailable, match=r"mlflow is unavailable: http://127\.0\.0\.1:1"
        ):
            call()
        assert time.monotonic() - started < 3


# -- one outcome in every component -------------------------------------------------------


def _gateway(settings: Settings) -> object:
    return asyncio.run(champion_info(settings.mlflow_uri, settings.model_name))


def _predictor(settings: Settings) -> object:
    source = RegistrySource(
        settings.mlflow_uri, settings.model_name, ALIAS_CHAMPION, settings.state_dir / "cache"
    )
    return source.fetch(None)


#: Each component's champion lookup, and what it turns "no champion" into.
LOOKUPS: dict[str, tuple[Callable[[Settings], object], type[Exception] | None]] = {
    "rollout (KServe location)": (resolve_champion, NotFound),
    "rollout controller": (lambda s: RolloutRegistry(s).champion(), None),
    "gateway GET /model": (_gateway, NotFound),
    "predictor reload": (_predictor, NoVersion),
}


@pytest.mark.parametrize("component", sorted(LOOKUPS))
def test_every_component_sees_no_champion_alike(
    component: str, isolated_settings: Settings, champion_model_dir: Path
) -> None:
    lookup, missing = LOOKUPS[component]
    version = champion_of(isolated_settings, champion_model_dir)
    MlflowClient(isolated_settings.mlflow_uri).delete_model_version(
        isolated_settings.model_name, version.version
    )
    if missing is None:
        assert lookup(isolated_settings) is None
    else:
        with pytest.raises(missing, match="has no 'champion' version"):
            lookup(isolated_settings)


@pytest.mark.parametrize("component", sorted(LOOKUPS))
def test_every_component_refuses_a_champion_whose_run_is_deleted(
    component: str, isolated_settings: Settings, champion_model_dir: Path
) -> None:
    lookup, _missing = LOOKUPS[component]
    version = champion_of(isolated_settings, champion_model_dir)
    assert version.run_id
    MlflowClient(isolated_settings.mlflow_uri).delete_run(version.run_id)
    expected = NoVersion if component == "predictor reload" else NotFound
    with pytest.raises(expected, match=f"training run {version.run_id} is deleted"):
        lookup(isolated_settings)


@pytest.mark.parametrize("component", sorted(LOOKUPS))
def test_every_component_reports_mlflow_down(component: str, isolated_settings: Settings) -> None:
    lookup, _missing = LOOKUPS[component]
    settings = isolated_settings.with_overrides(mlflow_uri=DOWN_URI)
    expected: type[VroomError | ModelLoadError] = (
        ModelLoadError if component == "predictor reload" else DependencyUnavailable
    )
    started = time.monotonic()
    with pytest.raises(expected, match=r"mlflow is unavailable: http://127\.0\.0\.1:1") as caught:
        lookup(settings)
    assert not isinstance(caught.value, NoVersion)  # an outage is not "no version"
    assert time.monotonic() - started < 10


def test_promotion_with_mlflow_down_names_it_and_the_fix(isolated_settings: Settings) -> None:
    with pytest.raises(DependencyUnavailable, match=r"mlflow is unavailable: .*vroom up"):
        promote(isolated_settings.with_overrides(mlflow_uri=DOWN_URI))
