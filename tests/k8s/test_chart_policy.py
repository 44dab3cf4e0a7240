"""Policy checks over the rendered chart: container hardening, labels and selectors,
Services, settings (names, ports, DAG ids from the Python sources), RBAC and the
NetworkPolicy graph. The progressive-rollout side (controller, candidate) has its own
module, test_chart_rollouts.py, built on the helpers here."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.k8s.render import (
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    PodSpec,
    chart_metadata,
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
from vroom_cli.stack.settings import StackSettings
from vroom_common import events
from vroom_common.settings import DEFAULT_MODEL_NAME, Settings
from vroom_gateway.runners.kubernetes import LABEL_DAG_ID
from vroom_gateway.settings import GatewaySettings
from vroom_materializer.options import MaterializerOptions
from vroom_pipelines.settings import PipelineSettings
from vroom_predictor.settings import PredictorSettings
from vroom_registry import candidate_name
from vroom_rollout.champion import KSERVE_SCHEMES, map_storage_uri
from vroom_rollout.settings import RolloutSettings

CI_IDS = [p.name for p in CI_VALUES]
UID = 10001
#: The emptyDir every container writes to (the root filesystem is read-only).
SCRATCH = "/tmp"  # noqa: S108 - a path inside the pod
STANDARD_LABELS = ("name", "instance", "component", "part-of", "managed-by", "version")
#: Our images (images.<component>); the controller's only while controller.enabled.
OUR_IMAGES = ("gateway", "features", "predictor", "materializer", "pipelines", "controller")


def controller_enabled(values: Mapping[str, Any] | Path) -> bool:
    """Whether a values combination runs the rollout controller."""
    if isinstance(values, Path):
        values = load_values(values)
    return bool(render_values(values)["controller"]["enabled"])


def runs_controller(docs: list[dict[str, Any]]) -> bool:
    """Whether the rendered release has the controller Deployment."""
    names = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    return f"{RELEASE}-controller" in names


@pytest.fixture(params=CI_VALUES, ids=CI_IDS)
def values_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture
def docs(values_file: Path) -> list[dict[str, Any]]:
    return render(values_file)


# --- containers ----------------------------------------------------------------------


def _effective(pod: PodSpec, container: Mapping[str, Any], key: str) -> Any:
    container_sc = container.get("securityContext") or {}
    if key in container_sc:
        return container_sc[key]
    return (pod.spec.get("securityContext") or {}).get(key)


def test_every_container_is_hardened(docs: list[dict[str, Any]]) -> None:
    problems = []
    for pod, container in iter_containers(docs):
        where = f"{pod.owner_kind}/{pod.owner_name}/{container['name']}"
        sc = container.get("securityContext") or {}
        checks = {
            "runAsNonRoot": _effective(pod, container, "runAsNonRoot") is True,
            "runAsUser": _effective(pod, container, "runAsUser") == UID,
            "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
            "allowPrivilegeEscalation": sc.get("allowPrivilegeEscalation") is False,
            "capabilities": (sc.get("capabilities") or {}).get("drop") == ["ALL"],
            "seccomp": (_effective(pod, container, "seccompProfile") or {}).get("type")
            == "RuntimeDefault",
        }
        problems += [f"{where}: {name}" for name, ok in checks.items() if not ok]
    assert problems == []


def test_every_container_has_requests_and_limits(docs: list[dict[str, Any]]) -> None:
    for pod, container in iter_containers(docs):
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            assert set(resources.get(kind) or {}) >= {"cpu", "memory"}, (
                f"{pod.owner_name}/{container['name']} {kind}"
            )


def test_long_running_containers_have_probes(docs: list[dict[str, Any]]) -> None:
    long_running = [p for p in pod_specs(docs) if p.long_running]
    expected = {"gateway", "features", "materializer", "predictor"}
    if runs_controller(docs):
        expected.add("controller")
    assert {p.component for p in long_running} >= expected
    for pod in long_running:
        for container in pod.containers(init=False):
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert probe in container, f"{pod.owner_name}/{container['name']}: {probe}"


def test_writable_scratch_space_and_home(docs: list[dict[str, Any]]) -> None:
    """A read-only root needs an emptyDir at /tmp; HOME (library caches) points there."""
    for pod, container in iter_containers(docs):
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == SCRATCH]
        assert tmp, f"{pod.owner_name}/{container['name']}: no /tmp mount"
        assert "emptyDir" in volumes[tmp[0]["name"]]
        home = container_env(container).get("HOME")
        if pod.component != "redis":
            assert home == SCRATCH, f"{pod.owner_name}/{container['name']}: HOME={home}"


def test_images_are_pinned(values_file: Path, docs: list[dict[str, Any]]) -> None:
    app_version = chart_metadata()["appVersion"]
    ours = {f"vroom-forecast/{c}" for c in OUR_IMAGES}
    if not controller_enabled(values_file):
        ours.remove("vroom-forecast/controller")
    seen = set()
    for pod, container in iter_containers(docs):
        image = container["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{pod.owner_name}: {image} has no tag"
        assert tag != "latest"
        assert container.get("imagePullPolicy") == "IfNotPresent"
        if repository in ours:
            assert tag == app_version
            seen.add(repository)
    assert seen == ours


def test_image_values_layout_matches_the_skaffold_contract() -> None:
    values = chart_values()["images"]
    assert values["pullPolicy"] == "IfNotPresent"
    assert set(values) == {"pullPolicy", *OUR_IMAGES}
    for component in OUR_IMAGES:
        assert values[component] == {"repository": f"vroom-forecast/{component}", "tag": ""}
    docs = render({"images": {"gateway": {"repository": "reg.local/gw", "tag": "abc123"}}})
    gateway = one(docs, "Deployment", f"{RELEASE}-gateway")
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.local/gw:abc123"


# --- labels and selectors ----------------------------------------------------------------


def test_every_object_and_pod_has_the_standard_labels(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if f"app.kubernetes.io/{k}" not in labels]
        assert missing == [], f"{doc['kind']}/{doc['metadata']['name']}"
    for pod in pod_specs(docs):
        missing = [k for k in STANDARD_LABELS if f"app.kubernetes.io/{k}" not in pod.labels]
        assert missing == [], pod.owner_name


def _selectors(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    found = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
            found.append((where, spec["selector"]["matchLabels"]))
        elif doc["kind"] == "Service":
            found.append((where, spec["selector"]))
        elif doc["kind"] == "NetworkPolicy":
            found.append((where, spec["podSelector"]["matchLabels"]))
    return found


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_are_unique_per_release_and_component() -> None:
    alpha, beta = render(release="alpha"), render(release="beta")
    for where, selector in _selectors(alpha):
        assert selector.get("app.kubernetes.io/instance") == "alpha", where
        for pod in pod_specs(beta):
            assert not _matches(selector, pod.labels), f"{where} selects beta's {pod.owner_name}"
    # Within a release, a workload's selector picks only its own component's pods.
    for doc in of_kind(alpha, "Deployment") + of_kind(alpha, "StatefulSet"):
        selector = doc["spec"]["selector"]["matchLabels"]
        own = doc["spec"]["template"]["metadata"]["labels"]
        assert _matches(selector, own)
        others = [p for p in pod_specs(alpha) if p.component != own["app.kubernetes.io/component"]]
        assert not any(_matches(selector, p.labels) for p in others), doc["metadata"]["name"]


def test_every_service_selects_a_pod_of_the_chart(docs: list[dict[str, Any]]) -> None:
    pods = pod_specs(docs)
    for service in of_kind(docs, "Service"):
        selected = [
            p for p in pods if p.long_running and _matches(service["spec"]["selector"], p.labels)
        ]
        assert selected, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            names = {
                (p.get("name"), p["containerPort"])
                for pod in selected
                for c in pod.containers(init=False)
                for p in c.get("ports", [])
            }
            assert any(target in pair for pair in names), (service["metadata"]["name"], target)


def test_hpas_and_pdbs_target_the_chart_workloads(docs: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        assert any(
            _matches(pdb["spec"]["selector"]["matchLabels"], p.labels) for p in pod_specs(docs)
        )
    hpa_targets = {h["metadata"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert f"{RELEASE}-features" in hpa_targets


def test_sqlite_keeps_one_gateway_replica_and_postgresql_scales() -> None:
    default = render()
    assert f"{RELEASE}-gateway" not in {
        h["metadata"]["name"] for h in of_kind(default, "HorizontalPodAutoscaler")
    }
    gateway = one(default, "Deployment", f"{RELEASE}-gateway")
    assert gateway["spec"]["replicas"] == 1
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    postgres = render(next(p for p in CI_VALUES if p.name == "postgresql-values.yaml"))
    assert f"{RELEASE}-gateway" in {
        h["metadata"]["name"] for h in of_kind(postgres, "HorizontalPodAutoscaler")
    }


# --- settings: one source ------------------------------------------------------------------


def _setting_variables() -> dict[str, str]:
    """Every variable the services read -> its field (StackSettings and the materializer's)."""
    variables = StackSettings.env_names()
    prefix = MaterializerOptions.model_config.get("env_prefix", "")
    for name in MaterializerOptions.model_fields:
        variables[f"{prefix}{name.upper()}".upper()] = f"materializer.{name}"
    return variables


def _settings_of(container: Mapping[str, Any]) -> StackSettings:
    """The StackSettings a container's process builds from its literal environment."""
    fields = _setting_variables()
    values = {
        fields[name]: value
        for name, value in container_env(container).items()
        if value is not None and name in fields and "." not in fields[name]
    }
    return StackSettings.model_validate(values)


def test_every_vroom_variable_is_a_real_setting(docs: list[dict[str, Any]]) -> None:
    known = _setting_variables()
    for pod, container in iter_containers(docs):
        for name in container_env(container):
            if name.startswith(("VROOM_", "SERVING_")):
                assert name in known, (
                    f"{pod.owner_name}/{container['name']}: {name} is read by nothing"
                )
        if container["name"] != "wait-for-dependencies" and pod.component != "mlflow":
            _settings_of(container)  # every value parses
    options = {
        k[len("VROOM_MATERIALIZER_") :].lower(): v
        for _, c in iter_containers(docs)
        for k, v in container_env(c).items()
        if k.startswith("VROOM_MATERIALIZER_")
    }
    MaterializerOptions.model_validate(options)


#: The settings each component reads (field names; one of them for "a | b").
#: What every party to a progressive rollout reads (docs/rollouts.md).
ROLLOUT_POLICY = {
    "rollout_strategy", "rollout_steps", "rollout_shadow_s", "rollout_step_s",
    "rollout_min_requests", "rollout_max_error_rate", "rollout_max_p99_ratio",
    "rollout_p99_slack_ms", "rollout_max_disagreement", "rollout_timeout_s",
}  # fmt: skip
NEEDS: dict[str, set[str]] = {
    "gateway": {
        "host", "gateway_port", "redis_url", "mlflow_uri", "model_name",
        "predictor_grpc_target", "predictor_url", "candidate_predictor_grpc_target",
        "candidate_predictor_url", "feature_service_url", "state_dir", "db_path|database_url",
        "offline_store_path", "feast_repo", "log_format", "rollout_backend",
        "inference_service_name", "storage_uri_map", "kube_namespace", "pipeline_runner",
        "kube_materialize_cronjob", "kube_pipeline_cronjob", "rollout_candidate_timeout_s",
        "rollout_mirror_max_inflight", *ROLLOUT_POLICY,
    },
    "controller": {
        "redis_url", "mlflow_uri", "model_name", "state_dir", "log_format",
        "rollout_backend", "inference_service_name", "storage_uri_map", "kube_namespace",
        "predictor_url", "predictor_grpc_target", "candidate_predictor_url",
        "rollout_lease_ttl_s", "rollout_tick_s",
        *ROLLOUT_POLICY,
    },
    "features": {
        "host", "feature_service_port", "redis_url", "state_dir", "offline_store_path",
        "feast_repo", "log_format",
    },
    "materializer": {"redis_url", "state_dir", "feast_repo", "db_path|database_url", "log_format"},
    "predictor": {"redis_url", "model_name", "log_format", "state_dir"},
    "pipeline": {
        "redis_url", "mlflow_uri", "model_name", "state_dir", "db_path|database_url",
        "offline_store_path", "feast_repo", "log_format", "rollout_backend",
        "inference_service_name", "storage_uri_map", "kube_namespace", *ROLLOUT_POLICY,
    },
    "materialize": {
        "redis_url", "mlflow_uri", "state_dir", "db_path|database_url", "offline_store_path",
        "feast_repo", "log_format",
    },
}  # fmt: skip


def _main_containers(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Role -> the containers playing it (the pipeline's Jobs: by DAG id)."""
    roles: dict[str, list[dict[str, Any]]] = {}
    for pod in pod_specs(docs):
        for container in pod.containers(init=False):
            role = pod.component
            if pod.component == "pipelines":
                dag = pod.labels[LABEL_DAG_ID]
                role = "materialize" if dag == events.DAG_MATERIALIZE else "pipeline"
            roles.setdefault(role, []).append(container)
    return roles


def test_each_service_gets_the_variables_it_reads(
    values_file: Path, docs: list[dict[str, Any]]
) -> None:
    known = _setting_variables()
    roles = _main_containers(docs)
    needs_of = dict(NEEDS)
    if not controller_enabled(values_file):
        assert "controller" not in roles
        del needs_of["controller"]
    assert set(needs_of) <= set(roles)
    for role, needs in needs_of.items():
        for container in roles[role]:
            fields = {known[n] for n in container_env(container) if n in known}
            missing = [need for need in needs if not fields & set(need.split("|"))]
            assert missing == [], f"{role}: {missing}"


#: The settings class each of our main containers reads from its environment.
READERS: dict[str, type[Settings]] = {
    "gateway": GatewaySettings,
    "controller": RolloutSettings,
    "features": Settings,
    "materializer": Settings,
    "predictor": PredictorSettings,
    "pipeline": PipelineSettings,
    "materialize": PipelineSettings,
}


def test_each_service_is_given_only_settings_it_reads(docs: list[dict[str, Any]]) -> None:
    roles = _main_containers(docs)
    assert set(READERS) <= set(roles) | {"controller"}
    prefix = MaterializerOptions.model_config.get("env_prefix", "")
    options = {f"{prefix}{name}".upper() for name in MaterializerOptions.model_fields}
    for role, reader in READERS.items():
        known = set(reader.env_names()) | (options if role == "materializer" else set())
        for container in roles.get(role, []):
            stray = sorted(
                name
                for name in container_env(container)
                if name.startswith(("VROOM_", "SERVING_")) and name not in known
            )
            assert stray == [], f"{role}: {stray} set, but {reader.__name__} reads none of them"


def test_service_addresses_point_at_the_rendered_services(docs: list[dict[str, Any]]) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    isvc = one(docs, "InferenceService")["metadata"]["name"]
    gateway = _settings_of(_main_containers(docs)["gateway"][0])
    grpc_host, _, grpc_port = gateway.predictor_grpc_target.rpartition(":")
    # KServe (Standard mode) names the predictor Service <isvc>-predictor.
    assert grpc_host == f"{isvc}-predictor"
    assert int(grpc_port) == StackSettings.model_fields["predictor_grpc_port"].default
    assert gateway.inference_service_name == isvc
    features = urlsplit(gateway.feature_service_url)
    assert features.port in [p["port"] for p in services[features.hostname]["spec"]["ports"]]
    for url in (gateway.redis_url, gateway.mlflow_uri):
        parts = urlsplit(url)
        if parts.hostname in services:
            assert parts.port in [p["port"] for p in services[parts.hostname]["spec"]["ports"]]
        else:
            assert "." in (parts.hostname or ""), f"{url}: neither ours nor external"
    cronjobs = {
        c["metadata"]["labels"][LABEL_DAG_ID]: c["metadata"]["name"]
        for c in of_kind(docs, "CronJob")
    }
    assert gateway.kube_materialize_cronjob == cronjobs[events.DAG_MATERIALIZE]
    assert gateway.kube_pipeline_cronjob == cronjobs[events.DAG_PIPELINE]
    assert gateway.rollout_backend == "kubernetes"
    assert gateway.pipeline_runner == "kubernetes"


def test_ports_equal_the_settings_defaults() -> None:
    defaults = {name: f.default for name, f in StackSettings.model_fields.items()}
    values = chart_values()
    assert values["gateway"]["port"] == defaults["gateway_port"]
    assert values["features"]["port"] == defaults["feature_service_port"]
    assert values["predictor"]["httpPort"] == defaults["predictor_http_port"]
    assert values["predictor"]["grpcPort"] == defaults["predictor_grpc_port"]
    assert values["redis"]["port"] == defaults["redis_port"]
    assert values["mlflow"]["port"] == defaults["mlflow_port"]
    docs = render()
    runtime = one(docs, "ServingRuntime")["spec"]["containers"][0]
    assert runtime["name"] == "kserve-container"
    ports = {p["name"]: p["containerPort"] for p in runtime["ports"]}
    assert ports == {
        "http1": defaults["predictor_http_port"],
        "h2c": defaults["predictor_grpc_port"],
    }
    assert runtime["args"][runtime["args"].index("--grpc_port") + 1] == str(ports["h2c"])
    assert runtime["args"][runtime["args"].index("--http_port") + 1] == str(ports["http1"])
    assert runtime["args"][runtime["args"].index("--model_dir") + 1] == "/mnt/models"
    assert runtime["args"][runtime["args"].index("--model_name") + 1] == DEFAULT_MODEL_NAME
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert runtime[probe]["httpGet"]["port"] == ports["http1"]
    roles = _main_containers(docs)
    for role, field in (("gateway", "gateway_port"), ("features", "feature_service_port")):
        container = roles[role][0]
        assert [p["containerPort"] for p in container["ports"]] == [defaults[field]]
    assert {
        _settings_of(c).model_name
        for r in roles.values()
        for c in r
        if "SERVING_MODEL_NAME" in container_env(c)
    } == {DEFAULT_MODEL_NAME}


def test_predictor_runs_in_standard_mode_with_zero_unavailable_rollouts() -> None:
    isvc = one(render(), "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = isvc["spec"]["predictor"]
    assert predictor["deploymentStrategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "canaryTrafficPercent" not in predictor
    assert predictor["model"]["runtime"] == one(render(), "ServingRuntime")["metadata"]["name"]
    assert urlsplit(predictor["model"]["storageUri"]).scheme in KSERVE_SCHEMES
    canary = one(
        render(next(p for p in CI_VALUES if p.name == "canary-values.yaml")), "InferenceService"
    )
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20


def test_mlflow_artifacts_map_to_the_mlflow_pvc() -> None:
    docs = render()
    pipeline = _settings_of(_main_containers(docs)["pipeline"][0])
    mlflow = one(docs, "Deployment", f"{RELEASE}-mlflow")["spec"]["template"]["spec"]
    args = mlflow["containers"][0]["args"]
    destination = args[args.index("--artifacts-destination") + 1]
    claim = next(
        v["persistentVolumeClaim"]["claimName"] for v in mlflow["volumes"] if v["name"] == "data"
    )
    mount = next(
        m["mountPath"] for m in mlflow["containers"][0]["volumeMounts"] if m["name"] == "data"
    )
    assert one(docs, "PersistentVolumeClaim", claim)
    subpath = Path(destination).relative_to(mount)
    mapped = map_storage_uri("mlflow-artifacts:/1/models/m-abc/artifacts", pipeline.storage_uri_map)
    assert mapped == f"pvc://{claim}/{subpath}/1/models/m-abc/artifacts"


# --- pipelines ------------------------------------------------------------------------


def test_cronjob_templates_carry_the_dag_ids(docs: list[dict[str, Any]]) -> None:
    cronjobs = of_kind(docs, "CronJob")
    by_dag = {c["metadata"]["labels"][LABEL_DAG_ID]: c for c in cronjobs}
    assert set(by_dag) == {events.DAG_MATERIALIZE, events.DAG_PIPELINE}
    assert by_dag[events.DAG_MATERIALIZE]["metadata"]["name"] == f"{RELEASE}-materialize"
    assert by_dag[events.DAG_PIPELINE]["metadata"]["name"] == f"{RELEASE}-pipeline"
    for dag, cronjob in by_dag.items():
        assert cronjob["spec"]["suspend"] is True
        template = cronjob["spec"]["jobTemplate"]
        assert template["metadata"]["labels"][LABEL_DAG_ID] == dag
        assert template["spec"]["template"]["metadata"]["labels"][LABEL_DAG_ID] == dag
        container = template["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "vroom_pipelines"]
        command = "materialize" if dag == events.DAG_MATERIALIZE else "pipeline"
        assert container["args"][0] == command


def test_post_install_job_runs_the_whole_pipeline() -> None:
    docs = render()
    job = one(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["pipeline", "--synthetic", str(chart_values()["pipeline"]["data"]["synthetic"])]
    assert job["spec"]["template"]["metadata"]["labels"][LABEL_DAG_ID] == events.DAG_PIPELINE
    external = one(render(next(p for p in CI_VALUES if p.name == "external-values.yaml")), "Job")
    spec = external["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"] == ["pipeline", "--data-dir", "/data/fleet/2024"]
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"] == {"claimName": "vroom-fleet-data", "readOnly": True}
    upgrade = one(render({"pipeline": {"runOnUpgrade": True}}), "Job")
    assert upgrade["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_every_pipeline_pod_migrates_the_database_before_its_steps() -> None:
    postgres = render(next(p for p in CI_VALUES if p.name == "postgresql-values.yaml"))
    templates = [one(postgres, "Job")["spec"]["template"]] + [
        c["spec"]["jobTemplate"]["spec"]["template"] for c in of_kind(postgres, "CronJob")
    ]
    for template in templates:
        inits = template["spec"]["initContainers"]
        assert [c["name"] for c in inits] == ["wait-for-dependencies", "migrate"]
        migrate = inits[1]
        assert migrate["command"] == ["python", "-m", "vroom_pipelines", "migrate"]
        pipeline = template["spec"]["containers"][0]
        database = [e for e in pipeline["env"] if e["name"] == "SERVING_DATABASE_URL"]
        assert database  # the URL from its Secret, the same way as the steps get it
        assert [e for e in migrate["env"] if e["name"] == "SERVING_DATABASE_URL"] == database
        assert {m["name"] for m in migrate["volumeMounts"]} >= {"state"}


def test_helm_test_pod_and_notes() -> None:
    docs = render()
    pods = of_kind(docs, "Pod")
    assert len(pods) == 1
    assert pods[0]["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pods[0]["spec"]["containers"][0]["args"]
    assert args[1] == f"http://{RELEASE}-gateway:8000/health"
    assert int(args[2]) > 1
    notes = render_raw()[f"{RELEASE}/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-gateway 8000:8000" in notes


# --- RBAC ---------------------------------------------------------------------------

#: What the controller does to the candidate InferenceService by name.
KUBE_VERBS = ("get", "patch", "delete")


def _grants(role: Mapping[str, Any]) -> set[tuple[str, str, str, str]]:
    return {
        (group, resource, verb, name)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }


def test_rbac_grants_exactly_what_rollout_and_gateway_need(docs: list[dict[str, Any]]) -> None:
    assert not of_kind(docs, "ClusterRole")
    assert not of_kind(docs, "ClusterRoleBinding")
    isvc = one(docs, "InferenceService")["metadata"]["name"]
    cronjobs = [c["metadata"]["name"] for c in of_kind(docs, "CronJob")]
    patch_isvc = {("serving.kserve.io", "inferenceservices", v, isvc) for v in ("get", "patch")}
    roles = {r["metadata"]["name"]: _grants(r) for r in of_kind(docs, "Role")}
    expected = {
        f"{RELEASE}-rollout": patch_isvc,
        f"{RELEASE}-gateway": patch_isvc
        | {("batch", "cronjobs", "get", name) for name in cronjobs}
        | {("batch", "jobs", verb, "*") for verb in ("create", "list", "get")},
    }
    if runs_controller(docs):
        # The candidate InferenceService by name; create cannot be limited to one.
        candidate = candidate_name(isvc)
        expected[f"{RELEASE}-controller"] = (
            patch_isvc
            | {("serving.kserve.io", "inferenceservices", v, candidate) for v in KUBE_VERBS}
            | {("serving.kserve.io", "inferenceservices", "create", "*")}
        )
    assert roles == expected
    for binding in of_kind(docs, "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": binding["roleRef"]["name"], "namespace": NAMESPACE}
        ]


def test_only_the_gateway_controller_and_rollout_get_a_token(docs: list[dict[str, Any]]) -> None:
    for account in of_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    for pod in pod_specs(docs):
        token = pod.spec.get("automountServiceAccountToken")
        account = pod.spec["serviceAccountName"]
        if pod.component == "gateway":
            assert (account, token) == (f"{RELEASE}-gateway", True)
        elif pod.component == "controller":
            assert (account, token) == (f"{RELEASE}-controller", True)
        elif pod.component == "pipelines" and pod.labels[LABEL_DAG_ID] == events.DAG_PIPELINE:
            assert (account, token) == (f"{RELEASE}-rollout", True)
        else:
            assert (account, token) == (f"{RELEASE}-workload", False), pod.owner_name


# --- NetworkPolicies as a graph ------------------------------------------------------------

#: A pod outside the release and the namespace: the Internet, the API server, a database.
EXTERNAL = "external"
DNS = "dns"


def _pod_nodes(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {pod.component: pod.labels for pod in pod_specs(docs)}


def _peer_matches(peer: Mapping[str, Any], node: str, labels: Mapping[str, str]) -> bool:
    if "ipBlock" in peer:
        return True  # 0.0.0.0/0 reaches pods too: counted against every destination
    if "namespaceSelector" in peer:
        return node == DNS and _matches(peer.get("podSelector", {}).get("matchLabels", {}), labels)
    return node not in (EXTERNAL, DNS) and _matches(peer["podSelector"]["matchLabels"], labels)


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports
    )


def _allowed(
    policies: list[dict[str, Any]], direction: str, *, node: str, labels: Mapping[str, str],
    peer: str, peer_labels: Mapping[str, str], port: int, protocol: str,
) -> bool:  # fmt: skip
    kind = "Ingress" if direction == "ingress" else "Egress"
    selecting = [
        p for p in policies
        if kind in p["spec"]["policyTypes"] and node not in (EXTERNAL, DNS)
        and _matches(p["spec"]["podSelector"]["matchLabels"], labels)
    ]  # fmt: skip
    if not selecting:
        return True
    side = "from" if direction == "ingress" else "to"
    return any(
        _port_matches(rule, port, protocol)
        and (side not in rule or any(_peer_matches(x, peer, peer_labels) for x in rule[side]))
        for policy in selecting
        for rule in policy["spec"].get(direction, [])
    )


def _edges(docs: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    policies = of_kind(docs, "NetworkPolicy")
    nodes = _pod_nodes(docs)
    nodes[EXTERNAL] = {}
    nodes[DNS] = {"k8s-app": "kube-dns"}
    ports: dict[str, set[tuple[int, str]]] = {n: set() for n in nodes}
    for pod in pod_specs(docs):
        for container in pod.containers(init=False):
            ports[pod.component] |= {
                (p["containerPort"], "TCP") for p in container.get("ports", [])
            }
    ports[EXTERNAL] = {(p, "TCP") for p in (443, 6443, 5432, 6380, 6379, 5001, 80)}
    ports[DNS] = {(53, "UDP"), (53, "TCP")}
    edges = set()
    for (src, src_labels), (dst, dst_labels) in itertools.product(nodes.items(), nodes.items()):
        if src == dst or src in (EXTERNAL, DNS):
            continue
        for port, protocol in ports[dst]:
            out = {"node": src, "labels": src_labels, "peer": dst, "peer_labels": dst_labels}
            into = {"node": dst, "labels": dst_labels, "peer": src, "peer_labels": src_labels}
            where = {"port": port, "protocol": protocol}
            if _allowed(policies, "egress", **out, **where) and _allowed(
                policies, "ingress", **into, **where
            ):
                edges.add((src, dst, port))
    return edges


def _expected_edges(values: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    merged = render_values(values)
    redis = ("redis", 6379) if merged["redis"]["enabled"] else (EXTERNAL, 6380)
    mlflow = ("mlflow", 5001) if merged["mlflow"]["enabled"] else (EXTERNAL, 443)
    database = {(EXTERNAL, 5432)} if merged["database"]["url"] else set()
    kube_api = {(EXTERNAL, 443), (EXTERNAL, 6443)}
    outgoing = {
        "gateway": {("features", 8082), ("predictor", 8080), ("predictor", 8081), redis, mlflow}
        | database | kube_api,
        "features": {redis},
        "materializer": {redis} | database,
        "predictor": {redis},
        "pipelines": {redis, mlflow} | database | kube_api,
        "test": {("gateway", 8000)},
    }  # fmt: skip
    if merged["controller"]["enabled"]:
        # It asks the predictors (REST) which version they serve; nothing reaches it.
        outgoing["controller"] = {redis, mlflow, ("predictor", 8080)} | kube_api
    if merged["redis"]["enabled"]:
        outgoing["redis"] = set()
    if merged["mlflow"]["enabled"]:
        outgoing["mlflow"] = set()
    edges = {(src, dst, port) for src, targets in outgoing.items() for dst, port in targets}
    edges |= {(src, DNS, 53) for src in outgoing}
    # ipBlock 0.0.0.0/0 also covers pods: harmless only while no pod listens on those ports.
    return edges


def render_values(values: Mapping[str, Any]) -> dict[str, Any]:
    merged = chart_values()
    for key, value in values.items():
        if isinstance(value, Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def test_network_policies_allow_exactly_the_architecture(values_file: Path) -> None:
    docs = render(values_file)
    assert _edges(docs) == _expected_edges(load_values(values_file))


def test_default_deny_covers_every_pod(docs: list[dict[str, Any]]) -> None:
    deny = one(docs, "NetworkPolicy", f"{RELEASE}-default-deny")
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    for pod in pod_specs(docs):
        assert _matches(deny["spec"]["podSelector"]["matchLabels"], pod.labels), pod.owner_name


def test_network_policy_graph_detects_an_extra_edge() -> None:
    """The graph check can fail: opening features to the predictor is noticed."""
    docs = render()
    policy = one(docs, "NetworkPolicy", f"{RELEASE}-features")
    policy["spec"]["egress"].append(
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "predictor"}}}]}
    )
    policy_pred = one(docs, "NetworkPolicy", f"{RELEASE}-predictor")
    policy_pred["spec"]["ingress"].append({})
    assert ("features", "predictor", 8081) in _edges(docs) - _expected_edges({})
