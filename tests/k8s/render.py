"""Render the Helm chart offline with the real Helm engine and walk what it produced.

Shared by the chart tests (and usable by the image/Skaffold tests): ``render`` gives
the manifests of one values combination, ``pod_specs`` every pod a release would run
(including the predictor pod KServe builds from the InferenceService and our
ServingRuntime), ``container_env`` the literal environment of a container.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import helm_python
import jsonschema
import pytest
import yaml

REPO: Final = Path(__file__).resolve().parents[2]
CHART_DIR: Final = REPO / "charts" / "vroom-forecast"
CI_DIR: Final = CHART_DIR / "ci"
#: Every values combination CI renders.
CI_VALUES: Final = sorted(CI_DIR.glob("*-values.yaml"))
#: Schemas shared next to the repository (never copied into it).
SHARED_SCHEMAS: Final = REPO.parent / "shared" / "schemas"
KSERVE_SCHEMAS: Final = SHARED_SCHEMAS / "kserve-v0.20.0"
#: The Gateway API CRDs (HTTPRoute) of the version the chart targets.
GATEWAY_API_SCHEMAS: Final = SHARED_SCHEMAS / "gateway-api-v1.6.1"
#: The Prometheus Operator's monitoring CRDs (ServiceMonitor, PodMonitor, PrometheusRule).
PROMETHEUS_SCHEMAS: Final = SHARED_SCHEMAS / "prometheus-operator-v0.93.0"
#: The Kubernetes version manifests are validated for (kubernetes-validate ships it).
KUBE_VERSION: Final = "1.33.0"

RELEASE: Final = "vroom-forecast"
NAMESPACE: Final = "vroom"

Manifest = dict[str, Any]


def require_shared(path: Path) -> Path:
    """``path`` under ``../shared``, or skip the test saying what is missing."""
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared schemas live in ../shared next to the repo")
    return path


def load_values(path: Path) -> dict[str, Any]:
    """A values file as Helm reads it (an empty file is no overrides)."""
    return helm_python.values_from_yaml(path.read_text()) or {}


@functools.cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def chart_metadata() -> dict[str, Any]:
    return _chart().metadata


def chart_values() -> dict[str, Any]:
    """The chart's default values."""
    return _chart().values


def render_raw(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """Template path -> rendered text (raises the Helm error on bad values)."""
    return _chart().render(dict(values or {}), name=release, namespace=namespace, is_install=True)


@functools.cache
def _render_cached(values_yaml: str, release: str, namespace: str) -> tuple[Manifest, ...]:
    values = yaml.safe_load(values_yaml) or {}
    docs: list[Manifest] = []
    for path, text in sorted(render_raw(values, release=release, namespace=namespace).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["metadata"]["annotations"].setdefault("x-source", path)
                docs.append(doc)
    return tuple(docs)


def render(
    values: Mapping[str, Any] | Path | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    """The manifests of a release (hooks and test pods included), as dictionaries.

    Each gets an ``x-source`` annotation naming its template; ``strip_source`` removes
    it before schema validation.
    """
    if isinstance(values, Path):
        values = load_values(values)
    key = yaml.safe_dump(dict(values or {}), sort_keys=True)
    return copy.deepcopy(list(_render_cached(key, release, namespace)))


def strip_source(doc: Manifest) -> Manifest:
    doc = copy.deepcopy(doc)
    annotations = doc["metadata"].get("annotations", {})
    annotations.pop("x-source", None)
    if not annotations:
        doc["metadata"].pop("annotations", None)
    return doc


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def component_of(labels: Mapping[str, str]) -> str:
    return labels.get("app.kubernetes.io/component", "")


@dataclass(frozen=True)
class PodSpec:
    """A pod the release runs: who owns it, its labels and its spec."""

    owner_kind: str
    owner_name: str
    labels: dict[str, str]
    spec: dict[str, Any]
    long_running: bool
    """Serves or consumes until stopped (probes apply), unlike Jobs and test pods."""

    @property
    def component(self) -> str:
        return component_of(self.labels)

    def containers(self, *, init: bool = True) -> list[dict[str, Any]]:
        inits = self.spec.get("initContainers", []) if init else []
        return [*inits, *self.spec.get("containers", [])]


def _predictor_pod(isvc: Manifest, runtimes: dict[str, Manifest]) -> PodSpec:
    """The pod KServe builds: the runtime's container merged with the model's fields."""
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    runtime = runtimes[model["runtime"]]["spec"]
    containers = copy.deepcopy(runtime["containers"])
    overrides = {k: v for k, v in model.items() if k not in _MODEL_ONLY_FIELDS}
    containers[0].update(overrides)
    spec = {
        key: predictor[key]
        for key in (
            "serviceAccountName",
            "automountServiceAccountToken",
            "securityContext",
            "imagePullSecrets",
        )
        if key in predictor
    }
    spec["containers"] = containers
    spec["volumes"] = copy.deepcopy(runtime.get("volumes", [])) + predictor.get("volumes", [])
    return PodSpec("InferenceService", isvc["metadata"]["name"], predictor["labels"], spec, True)


#: InferenceService model fields that describe the model, not the container.
_MODEL_ONLY_FIELDS: Final = frozenset(
    {"modelFormat", "runtime", "storageUri", "storage", "protocolVersion", "runtimeVersion"}
)


def pod_specs(docs: list[Manifest]) -> list[PodSpec]:
    """Every pod template of the release, the predictor's included."""
    pods: list[PodSpec] = []
    runtimes = {d["metadata"]["name"]: d for d in of_kind(docs, "ServingRuntime")}
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            template = doc["spec"]["template"]
            pods.append(PodSpec(kind, name, template["metadata"]["labels"], template["spec"], True))
        elif kind == "Job":
            template = doc["spec"]["template"]
            pods.append(
                PodSpec(kind, name, template["metadata"]["labels"], template["spec"], False)
            )
        elif kind == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
            pods.append(
                PodSpec(kind, name, template["metadata"]["labels"], template["spec"], False)
            )
        elif kind == "Pod":
            pods.append(PodSpec(kind, name, doc["metadata"]["labels"], doc["spec"], False))
        elif kind == "InferenceService":
            pods.append(_predictor_pod(doc, runtimes))
    return pods


def container_env(container: Mapping[str, Any]) -> dict[str, str | None]:
    """Name -> literal value (``None`` when it comes from a Secret or field ref)."""
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def iter_containers(docs: list[Manifest]) -> Iterator[tuple[PodSpec, dict[str, Any]]]:
    for pod in pod_specs(docs):
        for container in pod.containers():
            yield pod, container


# --- CRD schemas (KServe, Gateway API, Prometheus Operator) --------------------------------


def _close(node: Any) -> Any:
    """Reject unknown fields: additionalProperties false where properties are listed."""
    if isinstance(node, dict):
        node = {key: _close(value) for key, value in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_close(item) for item in node]
    return node


@functools.cache
def crd_validator(path: Path, kind: str) -> tuple[str, jsonschema.protocols.Validator]:
    """The stored (and served) version of the CRD in ``path`` (under ``../shared``):
    its ``group/version`` and a validator of its schema that rejects unknown fields."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # CRDs are large
    crd = yaml.load(require_shared(path).read_text(), Loader=loader)  # noqa: S506 - a safe loader
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage"))
    schema = _close(version["schema"]["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return f"{crd['spec']['group']}/{version['name']}", cls(schema)


def crd_errors(doc: Manifest, path: Path) -> list[str]:
    """What is wrong with ``doc`` against the CRD in ``path`` (empty when valid)."""
    group_version, validator = crd_validator(path, doc["kind"])
    errors = [f"apiVersion {doc['apiVersion']} != {group_version}"] * (
        doc["apiVersion"] != group_version
    )
    errors += [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(strip_source(doc))
    ]
    return errors
