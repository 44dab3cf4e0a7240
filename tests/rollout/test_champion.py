"""The champion alias resolved to a location KServe can read."""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from tests.rollout.conftest import NAMESPACE, MakeFakeKube, api_client_for
from vroom_common.errors import DependencyUnavailable, InvalidInput, NotFound
from vroom_registry import ALIAS_CHAMPION
from vroom_rollout.champion import map_storage_uri, resolve_champion
from vroom_rollout.kubernetes import KubernetesRollout
from vroom_rollout.settings import RolloutSettings

MAPPING = {
    "mlflow-artifacts:/": "s3://models/mlartifacts/",
    "mlflow-artifacts:/7/": "pvc://mlflow-artifacts/experiment-7/",
    "file:///srv/mlflow/artifacts/": "pvc://mlflow-artifacts/",
}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # Mapped: the longest matching prefix wins.
        ("mlflow-artifacts:/1/abc/artifacts/model", "s3://models/mlartifacts/1/abc/artifacts/model"),
        ("mlflow-artifacts:/7/abc/artifacts/model", "pvc://mlflow-artifacts/experiment-7/abc/artifacts/model"),
        # The server's host in an mlflow-artifacts URI does not matter.
        ("mlflow-artifacts://mlflow:5000/1/abc/artifacts/model", "s3://models/mlartifacts/1/abc/artifacts/model"),
        ("file:///srv/mlflow/artifacts/1/abc/artifacts/model", "pvc://mlflow-artifacts/1/abc/artifacts/model"),
        # Readable by KServe as they are.
        ("s3://bucket/1/abc/artifacts/model", "s3://bucket/1/abc/artifacts/model"),
        ("gs://bucket/model", "gs://bucket/model"),
        ("pvc://claim/path/model", "pvc://claim/path/model"),
        ("https://models.example.com/model.tar.gz", "https://models.example.com/model.tar.gz"),
        ("file:///mnt/models/model", "file:///mnt/models/model"),
        ("/mnt/models/model", "/mnt/models/model"),
    ],
)  # fmt: skip
def test_map_storage_uri(uri: str, expected: str) -> None:
    assert map_storage_uri(uri, MAPPING) == expected


def test_map_storage_uri_takes_pairs_and_sorts_them_by_length() -> None:
    pairs = [("s3://a/", "s3://short/"), ("s3://a/b/", "s3://long/")]
    assert map_storage_uri("s3://a/b/model", pairs) == "s3://long/model"
    assert map_storage_uri("s3://a/c/model", pairs) == "s3://short/c/model"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("models:/vroom-forecast@champion", "cannot read models: URIs"),
        ("runs:/abc/model", "cannot read runs: URIs"),
        ("mlflow-artifacts:/1/abc/artifacts/model", "cannot read mlflow-artifacts: URIs"),
        ("ftp://host/model", "does not read the scheme 'ftp'"),
        ("mlruns/1/abc/artifacts/model", "a relative path"),
    ],
)
def test_unreadable_unmapped_uri_is_a_configuration_error(uri: str, why: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        map_storage_uri(uri, {"s3://elsewhere/": "s3://x/"})
    message = caught.value.message
    assert repr(uri) in message
    assert why in message
    assert "set storage_uri_map (VROOM_STORAGE_URI_MAP)" in message


@pytest.mark.parametrize(
    "value",
    [
        '{"mlflow-artifacts:/": "s3://b/m/", "runs:/": "s3://b/r/"}',
        '["mlflow-artifacts:/=s3://b/m/", "runs:/=s3://b/r/"]',
        "mlflow-artifacts:/=s3://b/m/,runs:/=s3://b/r/",
    ],
)
def test_storage_uri_map_from_the_environment(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VROOM_STORAGE_URI_MAP", value)
    assert RolloutSettings().storage_uri_map == {
        "mlflow-artifacts:/": "s3://b/m/",
        "runs:/": "s3://b/r/",
    }


def test_storage_uri_map_entry_without_equals_is_rejected() -> None:
    with pytest.raises(ValueError, match="'s3://b/m/' is not of the form 'from=to'"):
        RolloutSettings(storage_uri_map=["s3://b/m/"])


def test_rollout_settings_defaults_and_derivation() -> None:
    settings = RolloutSettings(host="10.0.0.5", predictor_http_port=9090)
    assert settings.predictor_url == "http://10.0.0.5:9090"
    assert settings.with_overrides(predictor_http_port=9191).predictor_url == (
        "http://10.0.0.5:9191"
    )
    assert settings.inference_service_name == "vroom-forecast"
    assert (settings.rollout_wait_ready, settings.rollout_timeout_s) == (False, 300)


def champion_version(settings: RolloutSettings) -> tuple[str, str, str]:
    """Register a version the way training does and alias it champion: (version, run, source)."""
    client = MlflowClient(settings.mlflow_uri)
    experiment_id = client.create_experiment(settings.mlflow_experiment)
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/model"
    client.create_registered_model(settings.model_name)
    version = client.create_model_version(settings.model_name, source, run_id=run.info.run_id)
    client.set_registered_model_alias(settings.model_name, ALIAS_CHAMPION, version.version)
    return str(version.version), run.info.run_id, source


@pytest.mark.integration
def test_resolve_champion_maps_the_version_source(isolated_settings: RolloutSettings) -> None:
    version, run_id, source = champion_version(isolated_settings)
    assert source.startswith("mlflow-artifacts:/")
    settings = isolated_settings.with_overrides(
        storage_uri_map={"mlflow-artifacts:/": "s3://models/mlartifacts/"}
    )

    champion = resolve_champion(settings)

    assert (champion.model_name, champion.version, champion.run_id) == (
        settings.model_name,
        version,
        run_id,
    )
    assert champion.source_uri == source
    assert champion.storage_uri == source.replace(
        "mlflow-artifacts:/", "s3://models/mlartifacts/", 1
    )
    assert champion.storage_uri.endswith(f"/{run_id}/artifacts/model")


@pytest.mark.integration
def test_resolve_champion_without_a_mapping_names_the_setting(
    isolated_settings: RolloutSettings,
) -> None:
    champion_version(isolated_settings)
    with pytest.raises(
        InvalidInput, match=r"cannot read mlflow-artifacts: URIs; set storage_uri_map"
    ):
        resolve_champion(isolated_settings)


@pytest.mark.integration
def test_no_champion_is_not_found(isolated_settings: RolloutSettings) -> None:
    with pytest.raises(NotFound, match=f"model '{isolated_settings.model_name}' has no 'champion'"):
        resolve_champion(isolated_settings)


def test_mlflow_down_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(
        DependencyUnavailable, match=r"mlflow is unavailable: http://127\.0\.0\.1:1"
    ):
        resolve_champion(RolloutSettings(mlflow_uri="http://127.0.0.1:1"))
    assert time.monotonic() - started < 10


@pytest.mark.integration
def test_kubernetes_rollout_of_the_registry_champion(
    isolated_settings: RolloutSettings, make_fake_kube: MakeFakeKube
) -> None:
    """End to end: the real registry's champion reaches the fake InferenceService."""
    _version, run_id, _source = champion_version(isolated_settings)
    settings = isolated_settings.with_overrides(
        rollout_backend="kubernetes",
        kube_namespace=NAMESPACE,
        storage_uri_map={"mlflow-artifacts:/": "pvc://mlflow-artifacts/"},
    )
    fake = make_fake_kube()

    result = KubernetesRollout(settings, api_client_for(fake)).rollout()

    patch = fake.requests[-1]
    assert patch.method == "PATCH"
    uri = patch.body["spec"]["predictor"]["model"]["storageUri"]
    assert uri.startswith("pvc://mlflow-artifacts/")
    assert uri.endswith(f"/{run_id}/artifacts/model")
    assert patch.body["metadata"]["annotations"] == {
        "vroom-forecast.io/model-name": settings.model_name,
        "vroom-forecast.io/model-version": result.version,
    }
