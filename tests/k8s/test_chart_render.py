"""The chart renders with the real Helm engine, lints strictly, rejects bad values, and
every manifest validates against the Kubernetes (pinned version) and KServe v0.20 schemas."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from tests.k8s.render import (
    CHART_DIR,
    CI_VALUES,
    KSERVE_SCHEMAS,
    KUBE_VERSION,
    chart_metadata,
    crd_errors,
    load_values,
    of_kind,
    one,
    render,
    render_raw,
    strip_source,
)
from vroom_registry import candidate_name
from vroom_rollout.champion import ChampionRef
from vroom_rollout.kubernetes import candidate_manifest

#: Kinds validated against KServe's CRDs instead of the Kubernetes schemas.
KSERVE_CRDS = {
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
}
#: Kinds validated against their CRDs, not the Kubernetes schemas (HTTPRoute:
#: test_chart_edge.py).
CRD_KINDS = {*KSERVE_CRDS, "HTTPRoute", "ServiceMonitor", "PodMonitor", "PrometheusRule"}

CI_IDS = [p.name for p in CI_VALUES]


def test_ci_values_cover_the_required_combinations() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "default-values.yaml",
        "external-values.yaml",
        "postgresql-values.yaml",
        "canary-values.yaml",
    }


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_renders_and_lints_strictly(values_file: Path) -> None:
    values = load_values(values_file)
    report = helm_python.lint(
        CHART_DIR, values, strict=True, namespace="vroom", kube_version=f"v{KUBE_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"], report
    assert not problems, report
    assert report["total_charts_linted"] == 1
    kinds = {d["kind"] for d in render(values)}
    assert {"Deployment", "Service", "InferenceService", "ServingRuntime", "CronJob"} <= kinds


def test_chart_metadata() -> None:
    meta = chart_metadata()
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "vroom-forecast"
    assert meta["appVersion"] == "0.1.0"


# --- values.schema.json ------------------------------------------------------------


def _schema_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmValuesError) as caught:
        render_raw(values)
    return str(caught.value)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"gateway": {"replicaz": 2}}, ["/gateway", "replicaz"]),
        ({"unknownTopLevel": True}, ["unknownTopLevel"]),
        ({"redis": {"storage": {"sise": "1Gi"}}}, ["/redis/storage", "sise"]),
        ({"predictor": {"canary": {"enabled": "yes"}}}, ["/predictor/canary/enabled"]),
        ({"redis": {"port": "6379"}}, ["/redis/port"]),
        ({"images": {"gateway": {"tag": "latest"}}}, ["/images/gateway/tag"]),
        (
            {"gateway": {"resources": {"requests": {"memory": "lots"}}}},
            ["/gateway/resources/requests/memory"],
        ),
        ({"logFormat": "xml"}, ["/logFormat"]),
        ({"rollout": {"steps": [0, 50]}}, ["/rollout/steps/0", "minimum"]),
        ({"rollout": {"steps": [10, 100]}}, ["/rollout/steps/1", "maximum"]),
        ({"rollout": {"steps": [10.5]}}, ["/rollout/steps/0", "integer"]),
        ({"rollout": {"steps": "10,50"}}, ["/rollout/steps", "array"]),
        ({"rollout": {"steps": []}}, ["/rollout/steps", "minItems"]),
        ({"rollout": {"steps": [10, 10]}}, ["/rollout/steps", "equal"]),
        ({"rollout": {"strategy": "canary"}}, ["/rollout/strategy"]),
        ({"rollout": {"maxErrorRate": 1.5}}, ["/rollout/maxErrorRate", "maximum"]),
        ({"rollout": {"stepSeconds": 0}}, ["/rollout/stepSeconds"]),
        ({"rollout": {"minRequests": 0}}, ["/rollout/minRequests"]),
        ({"rollout": {"shadowSecs": 10}}, ["/rollout", "shadowSecs"]),
        ({"controller": {"enabled": "no"}}, ["/controller/enabled"]),
        ({"controller": {"replicas": 0}}, ["/controller/replicas"]),
        ({"images": {"controller": {"tag": "latest"}}}, ["/images/controller/tag"]),
    ],
    ids=[
        "unknown-key",
        "unknown-top",
        "nested-typo",
        "bool-type",
        "int-type",
        "latest",
        "bad-quantity",
        "enum",
        "steps-zero",
        "steps-100",
        "steps-float",
        "steps-string",
        "steps-empty",
        "steps-repeated",
        "strategy-enum",
        "error-rate-bound",
        "step-seconds-zero",
        "min-requests-zero",
        "rollout-typo",
        "controller-bool",
        "controller-replicas",
        "controller-latest",
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], names: list[str]) -> None:
    message = _schema_error(values)
    for name in names:
        assert name in message, message


def test_bad_values_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("gateway:\n  port: eight-thousand\nmlflow:\n  enabeld: false\n")
    message = _schema_error(load_values(bad))
    assert "/gateway/port" in message, message
    assert "enabeld" in message, message


def test_every_schema_object_is_closed() -> None:
    """additionalProperties false at every object level that lists properties."""
    schema = helm_python.Chart.load(CHART_DIR).schema
    assert schema is not None
    open_objects: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path or "/")
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}[{index}]")

    walk(schema, "")
    assert open_objects == []


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"gateway": {"autoscaling": {"enabled": True}}}, "database.url"),
        ({"gateway": {"replicas": 3}}, "database.url"),
        ({"redis": {"enabled": False}}, "redis.external.url"),
        (
            {"mlflow": {"enabled": False, "external": {"uri": "http://mlflow:5000"}}},
            "predictor.initialStorageUri",
        ),
        # Strict increase is beyond the schema: the templates check it.
        ({"rollout": {"steps": [50, 10]}}, "rollout.steps: [50,10] must increase strictly"),
        ({"rollout": {"steps": [10, 50, 30]}}, "rollout.steps"),
        # The candidate's predictor Service (<isvc>-candidate-predictor) must be a DNS label.
        ({"fullnameOverride": "a" * 44}, "at most 43"),
    ],
)
def test_inconsistent_values_fail_with_the_key(values: dict[str, Any], needle: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render_raw(values)
    assert needle in str(caught.value)


# --- Kubernetes schemas --------------------------------------------------------------


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_builtin_kinds_validate_strictly(values_file: Path) -> None:
    validated = 0
    for doc in render(values_file):
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(strip_source(doc), KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {exc.path}")
        validated += 1
    assert validated > 20


def test_strict_validation_catches_an_unknown_field() -> None:
    """The check above can fail: a typo in a pod spec is an error."""
    deployment = copy.deepcopy(strip_source(of_kind(render(), "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


# --- KServe CRDs ---------------------------------------------------------------------


def _kserve_errors(doc: dict[str, Any]) -> list[str]:
    return crd_errors(doc, KSERVE_SCHEMAS / KSERVE_CRDS[doc["kind"]])


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_kserve_resources_validate_against_the_v0_20_crds(values_file: Path) -> None:
    docs = render(values_file)
    kserve = [d for d in docs if d["kind"] in KSERVE_CRDS]
    assert {d["kind"] for d in kserve} == set(KSERVE_CRDS)
    for doc in kserve:
        assert _kserve_errors(doc) == [], doc["metadata"]["name"]


def test_candidate_inference_service_validates_against_the_v0_20_crd() -> None:
    """The controller's candidate, built from the rendered champion as on a cluster (the
    API server returns it with uid and status), is a valid InferenceService too."""
    champion = strip_source(one(render(), "InferenceService"))
    champion["metadata"].update(namespace="vroom", uid="0b7c", generation=3)
    ref = ChampionRef("vroom-forecast", "7", "run", "mlflow-artifacts:/1/m", "pvc://m/a/1/m")
    candidate = candidate_manifest(
        champion, ref, candidate_name(champion["metadata"]["name"]), "vroom-forecast-candidate"
    )
    assert _kserve_errors(candidate) == []
    model = candidate["spec"]["predictor"]["model"]
    assert model["storageUri"] == "pvc://m/a/1/m"
    assert model["args"][-2:] == ["--model_name", "vroom-forecast-candidate"]
    broken = copy.deepcopy(candidate)
    broken["spec"]["predictor"]["model"]["args"] = "--model_name x"
    assert _kserve_errors(broken) != []


def test_kserve_validation_rejects_unknown_fields() -> None:
    isvc = strip_source(one(render(), "InferenceService"))
    isvc["spec"]["predictor"]["model"]["storageURI"] = "pvc://x/y"
    runtime = strip_source(one(render(), "ServingRuntime"))
    runtime["spec"]["containers"][0]["portz"] = []
    assert any("storageURI" in e for e in _kserve_errors(isvc))
    assert any("portz" in e for e in _kserve_errors(runtime))
