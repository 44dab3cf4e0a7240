"""The Kubernetes rollout against a fake API server that records every request."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.rollout.conftest import (
    CHAMPION,
    ISVC_NAME,
    NAMESPACE,
    NEW_URI,
    OLD_URI,
    MakeFakeKube,
    kube_rollout,
)
from vroom_common.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    VroomError,
)
from vroom_rollout import RolloutTimeout, make_rollout
from vroom_rollout.kubernetes import KubernetesRollout
from vroom_rollout.settings import RolloutSettings

ISVC_PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{ISVC_NAME}"
RESOURCE = f"InferenceService {NAMESPACE}/{ISVC_NAME}"
CURRENT = {
    "vroom-forecast.io/model-name": "vroom-forecast",
    "vroom-forecast.io/model-version": CHAMPION.version,
}


def test_rollout_merge_patches_storage_uri_and_annotations(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(OLD_URI, {"vroom-forecast.io/model-version": "6", "team": "ml"})

    result = kube_rollout(fake, kube_settings).rollout()

    assert fake.methods() == ["GET", "PATCH"]
    get, patch = fake.requests
    assert get.path == ISVC_PATH
    assert patch.path == ISVC_PATH
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.query == {"fieldManager": ["vroom-rollout"]}
    assert patch.body == {
        "metadata": {
            "annotations": {
                "vroom-forecast.io/model-name": "vroom-forecast",
                "vroom-forecast.io/model-version": "7",
            }
        },
        "spec": {"predictor": {"model": {"storageUri": NEW_URI}}},
    }
    assert (result.backend, result.status, result.version, result.previous_version) == (
        "kubernetes",
        "rolled-out",
        "7",
        "6",
    )
    assert OLD_URI in result.detail
    assert NEW_URI in result.detail
    # The merge kept what the patch does not mention.
    assert fake.isvc is not None
    assert fake.isvc["metadata"]["annotations"]["team"] == "ml"
    assert fake.isvc["spec"]["predictor"]["model"]["runtime"] == "vroom-forecast"


def test_rollout_is_idempotent(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(OLD_URI)
    rollout = kube_rollout(fake, kube_settings)
    assert rollout.rollout().status == "rolled-out"
    fake.requests.clear()

    again = rollout.rollout()

    assert again.status == "unchanged"
    assert fake.methods() == ["GET"]  # no PATCH


def test_current_isvc_gets_no_patch(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(NEW_URI, CURRENT)
    result = kube_rollout(fake, kube_settings).rollout()
    assert (result.status, result.version, result.previous_version) == ("unchanged", "7", "7")
    assert fake.methods() == ["GET"]


def test_same_uri_but_other_version_annotation_is_patched(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(NEW_URI, {"vroom-forecast.io/model-version": "6"})
    assert kube_rollout(fake, kube_settings).rollout().status == "rolled-out"
    assert fake.methods() == ["GET", "PATCH"]


def test_missing_inference_service_is_not_found(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(None)
    with pytest.raises(NotFound, match=f"get {RESOURCE}: not found") as caught:
        kube_rollout(fake, kube_settings).rollout()
    assert "check inference_service_name and kube_namespace" in caught.value.message
    assert fake.methods() == ["GET"]


@pytest.mark.parametrize(
    ("method", "status", "error", "words"),
    [
        ("GET", 404, NotFound, f"get {RESOURCE}: not found (HTTP 404)"),
        ("GET", 403, PermissionDenied, f"get {RESOURCE}: not allowed (HTTP 403)"),
        ("PATCH", 403, PermissionDenied, f"patch {RESOURCE}: not allowed (HTTP 403)"),
        ("PATCH", 409, Conflict, f"patch {RESOURCE}: conflict (HTTP 409)"),
        ("PATCH", 422, InvalidInput, f"patch {RESOURCE}: rejected (HTTP 422)"),
        ("GET", 500, DependencyUnavailable, f"get {RESOURCE} failed (HTTP 500)"),
    ],
)
def test_api_errors_name_the_resource(
    make_fake_kube: MakeFakeKube,
    kube_settings: RolloutSettings,
    *,
    method: str,
    status: int,
    error: type[VroomError],
    words: str,
) -> None:
    fake = make_fake_kube(OLD_URI, fail={method: status})
    with pytest.raises(error) as caught:
        kube_rollout(fake, kube_settings).rollout()
    assert type(caught.value) is error
    assert words in caught.value.message
    assert caught.value.http_status == (503 if status == 500 else 400 if status == 422 else status)
    assert fake.methods()[-1] == method


def test_forbidden_says_which_permission_is_missing(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(OLD_URI, fail={"PATCH": 403})
    with pytest.raises(PermissionDenied) as caught:
        kube_rollout(fake, kube_settings).rollout()
    message = caught.value.message
    # The API server's own reason, then what to grant.
    assert 'cannot patch resource "inferenceservices"' in message
    assert "needs get and patch on inferenceservices.serving.kserve.io in namespace serving" in (
        message
    )
    assert caught.value.grpc_status == "PERMISSION_DENIED"


def test_unreachable_api_server_is_dependency_unavailable(kube_settings: RolloutSettings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    rollout = KubernetesRollout(
        kube_settings, client.ApiClient(configuration), resolve=lambda _s: CHAMPION
    )
    with pytest.raises(DependencyUnavailable, match=f"kubernetes is unavailable: get {RESOURCE}"):
        rollout.rollout()


@pytest.mark.parametrize("pending_ready", ["Unknown", "True"])
def test_wait_until_ready_polls_until_the_new_generation_is_ready(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings, pending_ready: str
) -> None:
    """``True`` while pending is a stale Ready from the old generation: still not done."""
    fake = make_fake_kube(OLD_URI, ready_after_gets=3, pending_ready=pending_ready)
    settings = kube_settings.with_overrides(rollout_wait_ready=True)

    result = kube_rollout(fake, settings).rollout()

    assert result.status == "rolled-out"
    assert "Ready after" in result.detail
    assert fake.methods() == ["GET", "PATCH", "GET", "GET", "GET"]
    assert fake.isvc is not None
    assert fake.isvc["status"]["observedGeneration"] == fake.isvc["metadata"]["generation"] == 2


def test_wait_until_ready_times_out_with_a_clear_error(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(OLD_URI, ready_after_gets=10**6)
    settings = kube_settings.with_overrides(rollout_wait_ready=True, rollout_timeout_s=0.3)
    started = time.monotonic()

    with pytest.raises(RolloutTimeout) as caught:
        kube_rollout(fake, settings).rollout()

    assert time.monotonic() - started < 3
    message = caught.value.message
    assert f"{RESOURCE} did not become Ready within 0.3s" in message
    assert "vroom-forecast v7" in message
    assert "Ready=Unknown, reason=RevisionMissing, message=Revision is being created" in message
    assert caught.value.http_status == 504
    # The patch happened (and stays): only the wait gave up.
    assert fake.methods()[:2] == ["GET", "PATCH"]
    assert fake.methods().count("GET") > 2


def test_without_wait_the_rollout_returns_right_after_the_patch(
    make_fake_kube: MakeFakeKube, kube_settings: RolloutSettings
) -> None:
    fake = make_fake_kube(OLD_URI, ready_after_gets=10**6)
    assert kube_rollout(fake, kube_settings).rollout().status == "rolled-out"
    assert fake.methods() == ["GET", "PATCH"]


def write_kubeconfig(path: Path, server: str, namespace: str = NAMESPACE) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "tester", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    return path


def test_outside_a_cluster_the_kubeconfig_is_used(
    make_fake_kube: MakeFakeKube,
    kube_settings: RolloutSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = make_fake_kube(OLD_URI)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", fake.url)))

    rollout = KubernetesRollout(kube_settings, resolve=lambda _s: CHAMPION)
    assert rollout.rollout().status == "rolled-out"

    assert fake.methods() == ["GET", "PATCH"]
    assert fake.requests[1].headers["authorization"] == "Bearer not-a-real-token"


def test_no_cluster_and_no_kubeconfig_is_a_clear_error(
    kube_settings: RolloutSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert isinstance(make_rollout(kube_settings), KubernetesRollout)  # contacts nothing
    rollout = KubernetesRollout(kube_settings, resolve=lambda _s: CHAMPION)
    with pytest.raises(
        DependencyUnavailable, match=r"not running in a cluster .* no usable kubeconfig"
    ):
        rollout.rollout()
