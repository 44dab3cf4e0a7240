"""Progressive rollouts on a cluster: the candidate InferenceService, the champion's
patch and the clean-up, against a fake API server that checks every request; then the
whole controller on a real Redis driving that deployer."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
import redis

from tests.rollout.conftest import (
    CHAMPION,
    ISVC_NAME,
    NAMESPACE,
    NEW_URI,
    OLD_URI,
    MakeFakeKube,
    api_client_for,
)
from tests.rollout.fake_kube import FakeKube
from tests.rollout.stand_ins import Clock, RecordingRegistry, feed, make_controller, send
from vroom_common.errors import PermissionDenied
from vroom_rollout.base import RolloutFailed
from vroom_rollout.champion import ChampionRef
from vroom_rollout.kubernetes import KubernetesDeployer
from vroom_rollout.progressive.controller import Controller
from vroom_rollout.progressive.store import RolloutStore
from vroom_rollout.settings import RolloutSettings

CANDIDATE = f"{ISVC_NAME}-candidate"
COLLECTION = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"
CHAMPION_ANNOTATIONS = {
    "serving.kserve.io/deploymentMode": "Standard",
    "serving.kserve.io/autoscalerClass": "hpa",
    "meta.helm.sh/release-name": "vroom-forecast",
    "vroom-forecast.io/model-name": "vroom-forecast",
    "vroom-forecast.io/model-version": "6",
}
CHAMPION_URI = OLD_URI
VERSIONS = {
    "6": ChampionRef("vroom-forecast", "6", "old-run", "mlflow-artifacts:/1/old", OLD_URI),
    "7": CHAMPION,
    "8": ChampionRef("vroom-forecast", "8", "r8", "mlflow-artifacts:/1/r8", "s3://models/r8"),
}


@dataclass
class Predictors:
    """What each predictor Service answers in v2 metadata: (URL, model) -> version."""

    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, url: str, model: str) -> str | None:
        self.asked.append((url, model))
        return self.versions.get((url, model))


@pytest.fixture
def settings() -> RolloutSettings:
    return RolloutSettings(
        rollout_backend="kubernetes",
        kube_namespace=NAMESPACE,
        inference_service_name=ISVC_NAME,
        predictor_url="http://vroom-forecast-predictor",
        candidate_predictor_url="http://vroom-forecast-candidate-predictor",
        rollout_timeout_s=5,
    )


def champion_kube(make_fake_kube: MakeFakeKube, **options: object) -> FakeKube:
    fake = make_fake_kube(CHAMPION_URI, dict(CHAMPION_ANNOTATIONS), **options)
    assert fake.isvc is not None
    fake.isvc["metadata"]["labels"] = {
        "app.kubernetes.io/name": "vroom-forecast",
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/managed-by": "Helm",
    }
    predictor = fake.isvc["spec"]["predictor"]
    predictor.update(
        minReplicas=2,
        maxReplicas=4,
        canaryTrafficPercent=10,
        labels={"app.kubernetes.io/component": "predictor"},
    )
    return fake


def deployer_for(
    fake: FakeKube, settings: RolloutSettings, predictors: Predictors | None = None
) -> KubernetesDeployer:
    return KubernetesDeployer(
        settings,
        api_client_for(fake),
        resolve=lambda _settings, version: VERSIONS[version],
        served_version=predictors or Predictors(),
    )


def test_the_candidate_is_the_champions_spec_with_its_own_model(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube)
    champion_spec = copy.deepcopy(fake.isvc["spec"])  # type: ignore[index]

    deployer_for(fake, settings).deploy_candidate("7")

    assert fake.calls() == [("GET", ISVC_NAME), ("POST", "")]
    create = fake.requests[1]
    assert create.path == COLLECTION
    assert create.query == {"fieldManager": ["vroom-rollout"]}
    body = create.body
    assert body["metadata"]["name"] == CANDIDATE
    assert body["metadata"]["namespace"] == NAMESPACE
    # KServe's own annotations are kept; Helm's and the champion's version are not.
    assert body["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Standard",
        "serving.kserve.io/autoscalerClass": "hpa",
        "vroom-forecast.io/model-name": "vroom-forecast",
        "vroom-forecast.io/model-version": "7",
        "vroom-forecast.io/candidate-of": ISVC_NAME,
    }
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/name": "vroom-forecast",
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/managed-by": "vroom-rollout",
        "vroom-forecast.io/role": "candidate",
    }
    # Owned by the champion: deleting the release's InferenceService removes it too.
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "name": ISVC_NAME,
            "uid": f"uid-{ISVC_NAME}",
        }
    ]
    predictor = body["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == NEW_URI
    assert predictor["model"]["args"] == ["--model_name", "vroom-forecast-candidate"]
    assert predictor["minReplicas"] == 1
    assert predictor["maxReplicas"] == 4
    assert "canaryTrafficPercent" not in predictor
    assert predictor["labels"] == {
        "app.kubernetes.io/component": "predictor",
        "vroom-forecast.io/role": "candidate",
    }
    # Everything else is the champion's (runtime, format, security context, ...).
    assert predictor["model"]["runtime"] == champion_spec["predictor"]["model"]["runtime"]
    assert predictor["model"]["modelFormat"] == champion_spec["predictor"]["model"]["modelFormat"]
    # The champion itself was only read.
    assert fake.isvc is not None
    assert fake.isvc["spec"] == champion_spec


def test_deploying_again_keeps_a_matching_candidate_and_fixes_a_stale_one(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube)
    deployer = deployer_for(fake, settings)
    deployer.deploy_candidate("7")
    generation = fake.others[CANDIDATE]["metadata"]["generation"]

    deployer.deploy_candidate("7")  # a controller that died after creating it
    assert fake.calls()[2:] == [("GET", ISVC_NAME), ("POST", ""), ("GET", CANDIDATE)]
    assert fake.others[CANDIDATE]["metadata"]["generation"] == generation

    deployer.deploy_candidate("8")  # a leftover of an earlier rollout
    assert fake.calls()[5:] == [
        ("GET", ISVC_NAME),
        ("POST", ""),
        ("GET", CANDIDATE),
        ("PATCH", CANDIDATE),
    ]
    patch = fake.requests[-1]
    assert patch.headers["content-type"] == "application/merge-patch+json"
    candidate = fake.others[CANDIDATE]
    assert candidate["spec"]["predictor"]["model"]["storageUri"] == "s3://models/r8"
    assert candidate["metadata"]["annotations"]["vroom-forecast.io/model-version"] == "8"
    assert candidate["metadata"]["generation"] == generation + 1


def test_the_candidate_is_ready_only_when_kserve_and_its_predictor_say_so(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube, ready_after_gets=2)
    predictors = Predictors()
    deployer = deployer_for(fake, settings, predictors)
    deployer.deploy_candidate("7")

    assert deployer.candidate_ready("7") is None  # Ready=Unknown: pods starting
    assert deployer.candidate_ready("7") is None  # Ready, but its predictor says nothing yet
    assert predictors.asked == [(settings.candidate_predictor_url, "vroom-forecast-candidate")]
    predictors.versions[settings.candidate_predictor_url, "vroom-forecast-candidate"] = "6"
    assert deployer.candidate_ready("7") is None  # an old pod answered
    predictors.versions[settings.candidate_predictor_url, "vroom-forecast-candidate"] = "7"
    detail = deployer.candidate_ready("7")
    assert detail == (
        f"InferenceService {NAMESPACE}/{CANDIDATE} serves vroom-forecast-candidate v7 "
        f"from {NEW_URI}"
    )


def test_a_candidate_kserve_gave_up_on_fails_the_rollout_with_its_reason(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube)
    deployer = deployer_for(fake, settings)
    deployer.deploy_candidate("7")
    candidate = fake.others[CANDIDATE]
    failed = {
        "transitionStatus": "BlockedByFailedLoad",
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no model.onnx in /mnt/models"},
    }
    # A failure reported for an older generation is not about this spec.
    candidate["metadata"]["generation"] = 2
    candidate["status"] = {"observedGeneration": 1, "modelStatus": failed}
    assert deployer.candidate_ready("7") is None

    candidate["status"]["observedGeneration"] = 2
    with pytest.raises(RolloutFailed) as caught:
        deployer.candidate_ready("7")
    assert caught.value.message == (
        f"InferenceService {NAMESPACE}/{CANDIDATE} failed to serve v7: BlockedByFailedLoad "
        "(ModelLoadFailed: no model.onnx in /mnt/models)"
    )


def test_a_candidate_deleted_under_the_rollout_fails_it(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube)
    deployer = deployer_for(fake, settings)
    with pytest.raises(RolloutFailed, match=f"{CANDIDATE} disappeared while v7 was starting"):
        deployer.candidate_ready("7")


def test_promotion_patches_the_champion_once_and_waits_for_the_new_version(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube, ready_after_gets=1)
    predictors = Predictors({(settings.predictor_url, "vroom-forecast"): "6"})
    deployer = deployer_for(fake, settings, predictors)

    deployer.serve_champion("7")
    deployer.serve_champion("7")  # a retry after a crash: nothing to patch
    assert fake.calls() == [("GET", ISVC_NAME), ("PATCH", ISVC_NAME), ("GET", ISVC_NAME)]
    assert fake.requests[1].body == {
        "metadata": {
            "annotations": {
                "vroom-forecast.io/model-name": "vroom-forecast",
                "vroom-forecast.io/model-version": "7",
            }
        },
        "spec": {"predictor": {"model": {"storageUri": NEW_URI}}},
    }
    assert fake.isvc is not None
    assert fake.isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"

    assert deployer.champion_serves("7") is None  # the rolling update is under way
    assert deployer.champion_serves("7") is None  # Ready, the old pods still answer
    predictors.versions[settings.predictor_url, "vroom-forecast"] = "7"
    assert deployer.champion_serves("7") == (
        f"InferenceService {NAMESPACE}/{ISVC_NAME} serves vroom-forecast v7 from {NEW_URI}"
    )


def test_removing_the_candidate_is_idempotent(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube)
    deployer = deployer_for(fake, settings)
    deployer.deploy_candidate("7")

    assert deployer.remove_candidate() == f"InferenceService {NAMESPACE}/{CANDIDATE} deleted"
    assert CANDIDATE not in fake.others
    assert deployer.remove_candidate() == (
        f"InferenceService {NAMESPACE}/{CANDIDATE} was already gone"
    )
    assert fake.calls()[-2:] == [("DELETE", CANDIDATE), ("DELETE", CANDIDATE)]
    assert fake.isvc is not None  # the champion stays


def test_missing_rights_name_every_verb_the_deployer_needs(
    make_fake_kube: MakeFakeKube, settings: RolloutSettings
) -> None:
    fake = champion_kube(make_fake_kube, fail={"POST": 403})
    with pytest.raises(PermissionDenied) as caught:
        deployer_for(fake, settings).deploy_candidate("7")
    message = caught.value.message
    assert message.startswith(f"create InferenceService {NAMESPACE}/{CANDIDATE}: not allowed")
    assert (
        f"needs get and patch on inferenceservices.serving.kserve.io {ISVC_NAME!r}, get, "
        f"patch and delete on {CANDIDATE!r}, and create on inferenceservices"
    ) in message


# --- the controller driving the Kubernetes deployer -----------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("outcome", ["promoted", "rolled_back"])
def test_a_cluster_rollout_from_candidate_to_outcome(
    make_fake_kube: MakeFakeKube,
    settings: RolloutSettings,
    isolated_settings: RolloutSettings,
    redis_client: redis.Redis,
    outcome: str,
) -> None:
    """Every API request of a whole rollout, in order: the candidate is created, judged,
    and either the champion is patched and reports the new version before the candidate
    goes, or the candidate goes and the champion is never touched."""
    cluster = isolated_settings.with_overrides(
        **settings.model_dump(
            include={
                "rollout_backend",
                "kube_namespace",
                "inference_service_name",
                "predictor_url",
                "candidate_predictor_url",
            }
        ),
        rollout_steps=[50],
        rollout_shadow_s=10,
        rollout_step_s=10,
        rollout_min_requests=20,
        rollout_lease_ttl_s=1.0,
    )
    fake = champion_kube(make_fake_kube)
    model = cluster.model_name
    predictors = Predictors(
        {
            (cluster.predictor_url, model): "6",
            (cluster.candidate_predictor_url, f"{model}-candidate"): "7",
        }
    )
    deployer = deployer_for(fake, cluster, predictors)
    registry = RecordingRegistry(versions={"6", "7"}, aliases={"champion": "6"})
    store = RolloutStore(redis_client, cluster.model_name)
    clock = Clock()
    controller = make_controller(cluster, store, deployer, registry, clock)

    send(store, "start", version="7")
    state = controller.tick()
    assert state.state == "shadow", state.reason
    assert CANDIDATE in fake.others
    if outcome == "rolled_back":
        feed(redis_client, state, gap=40.0)
        state = controller.tick()
    else:
        for _ in ("canary", "promoting"):
            feed(redis_client, state)
            clock.now += 10.5
            state = controller.tick()
        assert state.state == "promoting"
        assert CANDIDATE in fake.others  # kept until the champion reports v7
        predictors.versions[cluster.predictor_url, model] = "7"
        state = controller.tick()
    controller.tick()  # nothing left to do: no request repeats
    assert state.state == outcome, state.reason
    assert state.cleaned_up
    assert CANDIDATE not in fake.others
    assert fake.isvc is not None
    champion_uri = fake.isvc["spec"]["predictor"]["model"]["storageUri"]
    writes = [call for call in fake.calls() if call[0] != "GET"]
    if outcome == "promoted":
        assert champion_uri == NEW_URI
        assert registry.aliases["champion"] == "7"
        assert writes == [("POST", ""), ("PATCH", ISVC_NAME), ("DELETE", CANDIDATE)]
    else:
        assert champion_uri == OLD_URI
        assert registry.aliases["champion"] == "6"
        assert state.reason is not None
        assert state.reason.startswith("disagreement_median")
        assert writes == [("POST", ""), ("DELETE", CANDIDATE)]


def cluster_controller(
    fake: FakeKube,
    isolated_settings: RolloutSettings,
    settings: RolloutSettings,
    redis_client: redis.Redis,
    predictors: Predictors,
) -> tuple[Controller, RolloutStore, Clock]:
    cluster = isolated_settings.with_overrides(
        **settings.model_dump(
            include={
                "rollout_backend",
                "kube_namespace",
                "inference_service_name",
                "predictor_url",
                "candidate_predictor_url",
            }
        ),
        rollout_timeout_s=30,
        rollout_lease_ttl_s=1.0,
    )
    store = RolloutStore(redis_client, cluster.model_name)
    clock = Clock()
    registry = RecordingRegistry(versions={"6", "7"}, aliases={"champion": "6"})
    controller = make_controller(
        cluster, store, deployer_for(fake, cluster, predictors), registry, clock
    )
    return controller, store, clock


@pytest.mark.integration
def test_a_candidate_that_never_gets_ready_is_rolled_back_and_removed(
    make_fake_kube: MakeFakeKube,
    settings: RolloutSettings,
    isolated_settings: RolloutSettings,
    redis_client: redis.Redis,
) -> None:
    fake = champion_kube(make_fake_kube, ready_after_gets=10**6)
    controller, store, clock = cluster_controller(
        fake, isolated_settings, settings, redis_client, Predictors()
    )
    send(store, "start", version="7")
    assert controller.tick().state == "starting"
    assert controller.tick().state == "starting"  # Ready=Unknown: waiting
    clock.now += 31
    state = controller.tick()
    assert state.state == "rolled_back"
    assert state.reason == "candidate v7 was not ready within 30 s"
    assert state.cleaned_up
    assert CANDIDATE not in fake.others
    writes = [call for call in fake.calls() if call[0] != "GET"]
    assert writes == [("POST", ""), ("DELETE", CANDIDATE)]
    assert fake.isvc is not None
    assert fake.isvc["spec"]["predictor"]["model"]["storageUri"] == OLD_URI


@pytest.mark.integration
def test_a_missing_champion_inference_service_rolls_back_naming_it(
    make_fake_kube: MakeFakeKube,
    settings: RolloutSettings,
    isolated_settings: RolloutSettings,
    redis_client: redis.Redis,
) -> None:
    fake = make_fake_kube(None)  # the release's InferenceService is not there
    controller, store, _clock = cluster_controller(
        fake, isolated_settings, settings, redis_client, Predictors()
    )
    send(store, "start", version="7")
    state = controller.tick()
    assert state.state == "rolled_back"
    assert state.reason is not None
    assert state.reason.startswith("candidate v7 failed to load: ")
    assert f"InferenceService {NAMESPACE}/{ISVC_NAME}: not found" in state.reason
    assert "check inference_service_name and kube_namespace" in state.reason
    assert [call[0] for call in fake.calls()] == ["GET", "DELETE"]
