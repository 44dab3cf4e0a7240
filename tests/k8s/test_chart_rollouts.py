"""The chart's side of progressive rollouts (docs/rollouts.md, docs/kubernetes.md).

The controller Deployment, its account, Role and NetworkPolicy; the candidate
InferenceService the controller creates (built here with the deployer's own
``candidate_manifest`` from the rendered champion) and how the policies treat its pods;
one rollout policy for the gateway, the controller and the pipeline Jobs, equal to the
StackSettings defaults; and what ``controller.enabled=false`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.k8s.render import (
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    PodSpec,
    chart_values,
    container_env,
    iter_containers,
    load_values,
    of_kind,
    one,
    pod_specs,
    render,
    render_raw,
)
from tests.k8s.test_chart_policy import (
    ROLLOUT_POLICY,
    _allowed,
    _main_containers,
    _matches,
    _settings_of,
    render_values,
)
from vroom_cli.stack.settings import StackSettings
from vroom_controller.__main__ import build_parser
from vroom_registry import candidate_name
from vroom_rollout.champion import ChampionRef
from vroom_rollout.kubernetes import LABEL_ROLE, candidate_manifest
from vroom_rollout.settings import RolloutSettings

CI_IDS = [p.name for p in CI_VALUES]
CONTROLLER = f"{RELEASE}-controller"
KSERVE = "serving.kserve.io"

#: Chart value (section, key) -> the StackSettings field it sets.
VALUE_FIELDS: dict[tuple[str, str], str] = {
    ("rollout", "strategy"): "rollout_strategy",
    ("rollout", "steps"): "rollout_steps",
    ("rollout", "shadowSeconds"): "rollout_shadow_s",
    ("rollout", "stepSeconds"): "rollout_step_s",
    ("rollout", "minRequests"): "rollout_min_requests",
    ("rollout", "maxErrorRate"): "rollout_max_error_rate",
    ("rollout", "maxP99Ratio"): "rollout_max_p99_ratio",
    ("rollout", "p99SlackMs"): "rollout_p99_slack_ms",
    ("rollout", "maxDisagreement"): "rollout_max_disagreement",
    ("rollout", "candidateTimeoutSeconds"): "rollout_candidate_timeout_s",
    ("rollout", "mirrorMaxInflight"): "rollout_mirror_max_inflight",
    ("rollout", "timeoutSeconds"): "rollout_timeout_s",
    ("controller", "leaseTtlSeconds"): "rollout_lease_ttl_s",
    ("controller", "tickSeconds"): "rollout_tick_s",
}


@pytest.fixture(params=CI_VALUES, ids=CI_IDS)
def values_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def _default(field: str) -> Any:
    return StackSettings.model_fields[field].get_default(call_default_factory=True)


def _controller_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(docs, "Deployment", CONTROLLER)
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- one policy, the StackSettings' defaults ---------------------------------------------------


def test_rollout_values_default_to_the_settings_defaults() -> None:
    values = chart_values()
    assert {k for s, k in VALUE_FIELDS if s == "rollout"} == set(values["rollout"])
    for (section, key), field in VALUE_FIELDS.items():
        assert values[section][key] == _default(field), f"{section}.{key} != {field} default"
    # Every policy field the parties must agree on has a value.
    assert set(VALUE_FIELDS.values()) >= ROLLOUT_POLICY


def test_every_party_reads_one_rollout_policy(values_file: Path) -> None:
    """The gateway, the controller and the pipeline Jobs parse the same policy, and it is
    the one the values ask for."""
    values = render_values(load_values(values_file))
    roles = _main_containers(render(values_file))
    parties = [*roles["gateway"], *roles["pipeline"], *roles.get("controller", [])]
    assert len(parties) >= 3
    expected = {field: values[s][k] for (s, k), field in VALUE_FIELDS.items()}
    if not values["controller"]["enabled"]:
        expected["rollout_strategy"] = "immediate"
    for container in parties:
        settings = _settings_of(container)
        for field in ROLLOUT_POLICY:
            assert getattr(settings, field) == expected[field], (container["name"], field)


def test_custom_steps_reach_every_party_in_order() -> None:
    docs = render({"rollout": {"steps": [5, 25, 50, 75], "shadowSeconds": 0}})
    for container in (c for r in _main_containers(docs).values() for c in r):
        env = container_env(container)
        if "VROOM_ROLLOUT_STEPS" in env:
            assert env["VROOM_ROLLOUT_STEPS"] == "5,25,50,75"
            assert env["VROOM_ROLLOUT_SHADOW_S"] == "0"
            assert _settings_of(container).rollout_steps == [5, 25, 50, 75]


def test_the_controller_gets_every_rollout_setting() -> None:
    """A rollout_* setting the chart leaves at its default is one nobody can tune."""
    env = container_env(_controller_container(render()))
    fields = [name for name in RolloutSettings.model_fields if name.startswith("rollout_")]
    missing = [name for name in fields if RolloutSettings.env_name(name) not in env]
    assert missing == []


# --- the controller Deployment --------------------------------------------------------------


def test_controller_deployment() -> None:
    docs = render()
    deployment = one(docs, "Deployment", CONTROLLER)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == CONTROLLER
    assert pod["automountServiceAccountToken"] is True
    container = _controller_container(docs)
    assert container["image"] == "vroom-forecast/controller:0.1.0"
    assert container["command"] == ["python", "-m", "vroom_controller"]
    assert "ports" not in container
    assert container["resources"] == chart_values()["controller"]["resources"]
    # Liveness: the heartbeat probe, every 10 s, 3 misses; the startup probe covers the
    # start (no initialDelaySeconds).
    liveness = container["livenessProbe"]
    command = liveness["exec"]["command"]
    assert command == ["python", "-m", "vroom_controller", "--probe", "--max-age", "30"]
    assert (liveness["periodSeconds"], liveness["failureThreshold"]) == (10, 3)
    assert "initialDelaySeconds" not in liveness
    assert container["startupProbe"]["exec"]["command"] == command
    assert container["readinessProbe"]["exec"]["command"] == command
    # The probe's flags are the controller's own.
    args = build_parser().parse_args(command[3:])
    assert (args.probe, args.max_age) == (True, 30.0)


def test_controller_heartbeat_is_on_a_writable_emptydir() -> None:
    docs = render()
    pod = one(docs, "Deployment", CONTROLLER)["spec"]["template"]["spec"]
    container = _controller_container(docs)
    state_dir = _settings_of(container).state_dir
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [
        m for m in container["volumeMounts"] if state_dir.is_relative_to(Path(m["mountPath"]))
    ]
    assert mounts, f"{state_dir} is on the read-only root filesystem"
    assert "emptyDir" in volumes[mounts[0]["name"]]
    assert not any("persistentVolumeClaim" in v for v in volumes.values())


def test_controller_replicas_and_probe_age_follow_the_values() -> None:
    docs = render({"controller": {"replicas": 2, "heartbeatMaxAgeSeconds": 45}})
    assert one(docs, "Deployment", CONTROLLER)["spec"]["replicas"] == 2
    command = _controller_container(docs)["livenessProbe"]["exec"]["command"]
    assert build_parser().parse_args(command[3:]).max_age == 45.0


def test_nothing_serves_or_reaches_the_controller() -> None:
    docs = render()
    controller_pods = [p for p in pod_specs(docs) if p.component == "controller"]
    assert len(controller_pods) == 1
    labels = controller_pods[0].labels
    for service in of_kind(docs, "Service"):
        assert not _matches(service["spec"]["selector"], labels), service["metadata"]["name"]
    policy = one(docs, "NetworkPolicy", CONTROLLER)
    assert policy["spec"]["policyTypes"] == ["Egress"]
    policies = of_kind(docs, "NetworkPolicy")
    for pod in pod_specs(docs):
        if pod.component == "controller":
            continue
        for port in (80, 8000, 8080, 9090):
            assert not _allowed(
                policies, "ingress", node="controller", labels=labels,
                peer=pod.component, peer_labels=pod.labels, port=port, protocol="TCP",
            ), f"{pod.component} -> controller:{port}"  # fmt: skip


def test_controller_reaches_the_kube_api_as_the_gateway_does() -> None:
    docs = render({"networkPolicy": {"kubeApi": {"cidr": "172.18.0.2/32", "ports": [6443]}}})

    def api_rules(name: str) -> list[dict[str, Any]]:
        egress = one(docs, "NetworkPolicy", name)["spec"]["egress"]
        return [rule for rule in egress if any("ipBlock" in peer for peer in rule["to"])]

    expected = [
        {
            "to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}],
            "ports": [{"protocol": "TCP", "port": 6443}],
        }
    ]
    assert api_rules(CONTROLLER) == expected
    assert api_rules(f"{RELEASE}-gateway") == expected


# --- RBAC ---------------------------------------------------------------------------------


def test_controller_role_is_exactly_the_deployers_needs() -> None:
    docs = render()
    controller = _settings_of(_controller_container(docs))
    champion = one(docs, "InferenceService")["metadata"]["name"]
    assert controller.inference_service_name == champion
    # The name the deployer will use for the candidate (vroom_registry).
    candidate = candidate_name(controller.inference_service_name)
    role = one(docs, "Role", CONTROLLER)
    rules = sorted(
        (
            tuple(r["apiGroups"]),
            tuple(r["resources"]),
            tuple(sorted(r["verbs"])),
            tuple(r.get("resourceNames", ())),
        )
        for r in role["rules"]
    )
    assert rules == sorted(
        [
            ((KSERVE,), ("inferenceservices",), ("get", "patch"), (champion,)),
            ((KSERVE,), ("inferenceservices",), ("delete", "get", "patch"), (candidate,)),
            ((KSERVE,), ("inferenceservices",), ("create",), ()),
        ]
    )
    binding = one(docs, "RoleBinding", CONTROLLER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": CONTROLLER,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": CONTROLLER, "namespace": NAMESPACE}
    ]
    account = one(docs, "ServiceAccount", CONTROLLER)
    assert account["automountServiceAccountToken"] is False  # the pod asks for it


def test_controller_role_names_follow_the_release() -> None:
    docs = render(release="shop")
    role = one(docs, "Role", "shop-vroom-forecast-controller")
    names = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    assert names == {"shop-vroom-forecast", "shop-vroom-forecast-candidate"}


# --- the candidate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "release", "isvc", "grpc"),
    [
        ({}, RELEASE, RELEASE, 8081),
        ({"predictor": {"grpcPort": 9001}}, "shop", "shop-vroom-forecast", 9001),
    ],
)
def test_gateway_and_controller_address_champion_and_candidate(
    values: dict[str, Any], release: str, isvc: str, grpc: int
) -> None:
    docs = render(values, release=release)
    assert one(docs, "InferenceService")["metadata"]["name"] == isvc
    roles = _main_containers(docs)
    for container in [*roles["gateway"], *roles["controller"]]:
        settings = _settings_of(container)
        # KServe (Standard mode) names a predictor Service <isvc>-predictor, port 80 REST.
        assert settings.predictor_grpc_target == f"{isvc}-predictor:{grpc}"
        assert settings.predictor_url == f"http://{isvc}-predictor"
        candidate = candidate_name(settings.inference_service_name)
        assert settings.candidate_predictor_url == f"http://{candidate}-predictor"
    # The gateway alone calls the candidate over gRPC.
    (gateway,) = roles["gateway"]
    target = _settings_of(gateway).candidate_predictor_grpc_target
    assert target == f"{candidate_name(isvc)}-predictor:{grpc}"


def _candidate_pod(docs: list[dict[str, Any]]) -> PodSpec:
    """The candidate's predictor pod, from the manifest the deployer would create."""
    champion = one(docs, "InferenceService")
    ref = ChampionRef("vroom-forecast", "9", None, "mlflow-artifacts:/1/m", "pvc://m/a/1/m")
    name = candidate_name(champion["metadata"]["name"])
    manifest = candidate_manifest(champion, ref, name, "vroom-forecast-candidate")
    pods = [p for p in pod_specs([*docs, manifest]) if p.owner_name == name]
    assert len(pods) == 1
    return pods[0]


def _reachable(
    docs: list[dict[str, Any]], src: PodSpec, dst: PodSpec, port: int, dst_name: str = "cand"
) -> bool:
    policies = of_kind(docs, "NetworkPolicy")
    common = {"port": port, "protocol": "TCP"}
    return _allowed(
        policies, "egress", node=src.component, labels=src.labels,
        peer=dst_name, peer_labels=dst.labels, **common,
    ) and _allowed(
        policies, "ingress", node=dst_name, labels=dst.labels,
        peer=src.component, peer_labels=src.labels, **common,
    )  # fmt: skip


def test_candidate_pods_are_reached_exactly_like_the_champions(values_file: Path) -> None:
    docs = render(values_file)
    candidate = _candidate_pod(docs)
    champion = next(p for p in pod_specs(docs) if p.owner_kind == "InferenceService")
    assert candidate.labels[LABEL_ROLE] == "candidate"
    assert candidate.component == "predictor"
    deny = one(docs, "NetworkPolicy", f"{RELEASE}-default-deny")
    assert _matches(deny["spec"]["podSelector"]["matchLabels"], candidate.labels)
    http, grpc = chart_values()["predictor"]["httpPort"], chart_values()["predictor"]["grpcPort"]
    seen = 0
    for pod in pod_specs(docs):
        if pod.owner_kind == "InferenceService":
            continue
        for port in (http, grpc):
            # The same sources reach the candidate as the champion, on the same ports.
            assert _reachable(docs, pod, candidate, port) == _reachable(
                docs, pod, champion, port, "champion"
            ), (pod.component, port)
            seen += _reachable(docs, pod, candidate, port)
    gateway = next(p for p in pod_specs(docs) if p.component == "gateway")
    assert _reachable(docs, gateway, candidate, http)
    assert _reachable(docs, gateway, candidate, grpc)
    controllers = [p for p in pod_specs(docs) if p.component == "controller"]
    for controller in controllers:
        assert _reachable(docs, controller, candidate, http)
        assert not _reachable(docs, controller, candidate, grpc)
    features = next(p for p in pod_specs(docs) if p.component == "features")
    assert not _reachable(docs, features, candidate, http)
    assert seen == 2 + len(controllers)
    # Its predictor publishes model-loaded events, as the champion's does.
    for redis in (p for p in pod_specs(docs) if p.component == "redis"):
        port = chart_values()["redis"]["port"]
        assert _reachable(docs, candidate, redis, port, "redis")
        assert _reachable(docs, champion, redis, port, "redis")


def test_a_candidate_without_the_predictor_labels_would_be_cut_off() -> None:
    """The check above can fail: pods the predictor policy does not select are denied."""
    docs = render()
    candidate = _candidate_pod(docs)
    stripped = PodSpec(
        candidate.owner_kind,
        candidate.owner_name,
        {k: v for k, v in candidate.labels.items() if k != "app.kubernetes.io/component"},
        candidate.spec,
        candidate.long_running,
    )
    gateway = next(p for p in pod_specs(docs) if p.component == "gateway")
    assert _reachable(docs, gateway, candidate, 8080)
    assert not _reachable(docs, gateway, stripped, 8080)


# --- without the controller -----------------------------------------------------------------


def test_without_the_controller_every_promotion_is_immediate() -> None:
    enabled = render({"rollout": {"strategy": "progressive"}})
    docs = render({"controller": {"enabled": False}, "rollout": {"strategy": "progressive"}})
    for kind in ("Deployment", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"):
        assert one(enabled, kind, CONTROLLER)
        assert CONTROLLER not in {d["metadata"]["name"] for d in of_kind(docs, kind)}, kind
    assert not [p for p in pod_specs(docs) if p.component == "controller"]
    # No policy still names controller pods as a peer.
    for policy in of_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                selector = peer.get("podSelector", {}).get("matchLabels", {})
                assert selector.get("app.kubernetes.io/component") != "controller"

    def strategies(rendered: list[dict[str, Any]]) -> dict[str, str | None]:
        return {
            f"{pod.owner_name}/{c['name']}": container_env(c)["VROOM_ROLLOUT_STRATEGY"]
            for pod, c in iter_containers(rendered)
            if "VROOM_ROLLOUT_STRATEGY" in container_env(c)
        }

    assert set(strategies(docs).values()) == {"immediate"}
    assert set(strategies(enabled).values()) == {"progressive"}
    # The gateway, the post-install Job and the pipeline CronJob all say so.
    assert len(strategies(docs)) == 3
    roles = _main_containers(docs)
    for container in [*roles["gateway"], *roles["pipeline"]]:
        assert _settings_of(container).rollout_strategy == "immediate"
    notes = render_raw({"controller": {"enabled": False}})[f"{RELEASE}/templates/NOTES.txt"]
    assert "controller.enabled is false" in notes
    assert "-candidate" not in notes


def test_immediate_strategy_keeps_the_controller_for_manual_rollouts() -> None:
    docs = render({"rollout": {"strategy": "immediate"}})
    assert one(docs, "Deployment", CONTROLLER)
    for container in _main_containers(docs)["controller"]:
        assert _settings_of(container).rollout_strategy == "immediate"


def test_notes_tell_how_to_watch_a_rollout() -> None:
    notes = render_raw()[f"{RELEASE}/templates/NOTES.txt"]
    for needle in (
        f"kubectl -n {NAMESPACE} get inferenceservices -w",
        f"kubectl -n {NAMESPACE} logs -f deploy/{CONTROLLER}",
        "curl -s http://localhost:8000/rollout",
        f"kubectl -n {NAMESPACE} exec deploy/{RELEASE}-gateway -- python -c",
        f"port-forward svc/{RELEASE}-redis 6379:6379",
        "vroom rollout status -w",
        f"InferenceService\n{RELEASE}-candidate",
        "10% then 50%",
    ):
        assert needle in notes, needle
