"""The chart's monitoring (monitoring.*): ServiceMonitors and the predictor's PodMonitor,
the SLO alerts, the Grafana dashboard and the scrape NetworkPolicy, validated against
the Prometheus Operator's CRDs and checked against what the services really expose."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python
import pytest

from tests.k8s.render import (
    CI_DIR,
    NAMESPACE,
    PROMETHEUS_SCHEMAS,
    Manifest,
    chart_values,
    container_env,
    crd_errors,
    of_kind,
    one,
    pod_specs,
    render,
    render_raw,
)
from vroom_common.observability import REQUEST_METRIC
from vroom_features.drift import DRIFT_ALERT_PSI
from vroom_gateway.settings import GatewaySettings
from vroom_materializer.options import MaterializerOptions

MONITORING = CI_DIR / "monitoring-values.yaml"
ROOT = Path(__file__).resolve().parents[2]
CRDS = {
    "ServiceMonitor": PROMETHEUS_SCHEMAS / "monitoring.coreos.com_servicemonitors.yaml",
    "PodMonitor": PROMETHEUS_SCHEMAS / "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": PROMETHEUS_SCHEMAS / "monitoring.coreos.com_prometheusrules.yaml",
}
#: What the issue asks the alerts to cover, by alert name.
ALERTS = {
    "VroomGatewayErrorRate",
    "VroomPredictionLatencyP99",
    "VroomFeatureDrift",
    "VroomRolloutRolledBack",
    "VroomNoModelServed",
    "VroomMaterializerLag",
    "VroomDeadLetters",
    "VroomPredictionLogBacklog",
}


def _sources() -> str:
    """The services' and libraries' source, where every metric name is declared."""
    files = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]
    return "\n".join(path.read_text() for path in files)


def _metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (identifiers followed by a selector or range)."""
    names = set(re.findall(r"([a-z_][a-z0-9_]*)\s*\{", expr))
    return {n for n in names if n not in {"by", "without"}}


def _declared(name: str, sources: str) -> bool:
    """``name`` is exported by our code (histograms add _bucket, counters _total)."""
    base = re.sub(r"_(bucket|sum|count|total)$", "", name)
    return f'"{base}"' in sources or base == REQUEST_METRIC


def test_monitoring_is_off_by_default() -> None:
    docs = render()
    assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    ]
    assert not [
        d for d in of_kind(docs, "NetworkPolicy") if d["metadata"]["name"].endswith("scrape")
    ]


def test_every_monitoring_resource_validates_against_its_crd() -> None:
    docs = render(MONITORING)
    kinds = [d["kind"] for d in docs if d["kind"] in CRDS]
    assert sorted(kinds) == ["PodMonitor", "PrometheusRule", "ServiceMonitor", "ServiceMonitor"]
    for doc in docs:
        if doc["kind"] in CRDS:
            assert crd_errors(doc, CRDS[doc["kind"]]) == [], doc["metadata"]["name"]
            assert doc["metadata"]["labels"]["release"] == "kps"


def test_the_crd_check_catches_a_wrong_field() -> None:
    monitor = dict(of_kind(render(MONITORING), "ServiceMonitor")[0])
    monitor["spec"] = {**monitor["spec"], "endpoints": [{"port": "http", "intervall": "30s"}]}
    assert crd_errors(monitor, CRDS["ServiceMonitor"])


def test_service_monitors_select_the_services_and_their_metrics_port() -> None:
    docs = render(MONITORING)
    services = of_kind(docs, "Service")
    for monitor in of_kind(docs, "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if wanted.items() <= s["metadata"].get("labels", {}).items()]
        assert len(matched) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in matched[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports
            assert endpoint["path"] == "/metrics"
    names = {m["metadata"]["name"] for m in of_kind(docs, "ServiceMonitor")}
    assert names == {"vroom-forecast-gateway", "vroom-forecast-features"}


def test_the_pod_monitor_selects_the_predictor_pods_on_their_rest_port() -> None:
    docs = render(MONITORING)
    monitor = one(docs, "PodMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    pods = [p for p in pod_specs(docs) if wanted.items() <= p.labels.items()]
    assert [p.component for p in pods] == ["predictor"]
    ports = {
        port["name"]: port["containerPort"]
        for container in pods[0].containers(init=False)
        for port in container.get("ports", [])
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports


def test_prometheus_may_scrape_exactly_the_metrics_ports() -> None:
    docs = render(MONITORING)
    policy = one(docs, "NetworkPolicy", "vroom-forecast-scrape")
    selector = policy["spec"]["podSelector"]
    assert selector["matchExpressions"][0]["values"] == ["gateway", "features", "predictor"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    values = chart_values()  # the ports are the services' own
    ports = {p["port"] for p in rule["ports"]}
    assert ports == {
        values["gateway"]["port"],
        values["features"]["port"],
        values["predictor"]["httpPort"],
    }


def _alerts(docs: list[Manifest]) -> dict[str, dict[str, Any]]:
    rule = one(docs, "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_the_alerts_cover_the_slos_and_read_metrics_we_export() -> None:
    alerts = _alerts(render(MONITORING))
    assert set(alerts) == ALERTS
    sources = _sources()
    for name, alert in alerts.items():
        metrics = _metric_names(alert["expr"])
        assert metrics, name
        undeclared = [m for m in metrics if not _declared(m, sources)]
        assert undeclared == [], f"{name} reads {undeclared}, which nothing exports"
        assert f'namespace="{NAMESPACE}"' in alert["expr"], name
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]


def test_thresholds_come_from_values_and_the_gateway_shares_the_drift_one() -> None:
    docs = render({"monitoring": {"rules": {"enabled": True, "errorRatio": 0.05, "driftPsi": 0.4}}})
    alerts = _alerts(docs)
    assert alerts["VroomGatewayErrorRate"]["expr"].rstrip().endswith("> 0.05")
    assert alerts["VroomFeatureDrift"]["expr"].rstrip().endswith("> 0.4")
    gateway = next(p for p in pod_specs(docs) if p.component == "gateway")
    env = container_env(gateway.containers(init=False)[0])
    assert env["VROOM_DRIFT_ALERT_PSI"] == "0.4"
    default = container_env(
        next(p for p in pod_specs(render()) if p.component == "gateway").containers(init=False)[0]
    )
    assert float(default["VROOM_DRIFT_ALERT_PSI"]) == DRIFT_ALERT_PSI


def test_the_dashboard_is_a_grafana_sidecar_config_map_of_our_metrics() -> None:
    docs = render(MONITORING)
    (config_map,) = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (body,) = config_map["data"].values()
    dashboard = json.loads(body)
    assert dashboard["uid"] == "vroom-forecast"
    titles = [p["title"] for p in dashboard["panels"]]
    for needed in ("endpoint", "5xx", "p99", "model version", "candidate share", "Drift"):
        assert any(needed in title for title in titles), needed
    sources = _sources()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            undeclared = [m for m in _metric_names(target["expr"]) if not _declared(m, sources)]
            assert undeclared == [], panel["title"]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"monitoring": {"rules": {"errorRatio": 2}}}, "errorRatio"),
        ({"monitoring": {"serviceMonitors": {"interval": "often"}}}, "interval"),
        ({"monitoring": {"dashboard": {"enabled": True}}}, "dashboard"),
    ],
)
def test_bad_monitoring_values_are_refused_by_key(values: dict[str, Any], needle: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render_raw(values)
    assert needle in str(caught.value)


def test_the_prediction_log_values_reach_the_gateway_and_the_materializer() -> None:
    values = {"predictionLog": {"sample": 0.25, "retentionDays": 7, "maxBytes": 2**28}}
    docs = render(values)
    env = {
        p.component: container_env(p.containers(init=False)[0])
        for p in pod_specs(docs)
        if p.component in ("gateway", "materializer")
    }
    sample = env["gateway"]["VROOM_PREDICTION_LOG_SAMPLE"]
    assert (
        GatewaySettings.model_validate({"prediction_log_sample": sample}).prediction_log_sample
        == 0.25
    )
    prefix = "VROOM_MATERIALIZER_"
    options = MaterializerOptions.model_validate(
        {
            k[len(prefix) :].lower(): v
            for k, v in env["materializer"].items()
            if k.startswith(prefix)
        }
    )
    assert options.prediction_log_retention_days == 7
    assert options.prediction_log_max_bytes == 2**28
    assert options.prediction_log_flush_s == chart_values()["predictionLog"]["flushSeconds"]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"predictionLog": {"sample": 1.5}}, "sample"),
        ({"predictionLog": {"maxBytes": 10}}, "maxBytes"),
        ({"predictionLog": {"retentionDays": 0}}, "retentionDays"),
    ],
)
def test_bad_prediction_log_values_are_refused_by_key(values: dict[str, Any], needle: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render_raw(values)
    assert needle in str(caught.value)
