"""The chart's alert rules evaluated by Prometheus' own rule engine (``promtool``): the
PromQL is valid, and each alert fires on the series that should raise it (drift from a
real PSI of shifted inputs, 5xx, a rollback, no model) and stays quiet otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.k8s.render import NAMESPACE, one, render
from vroom_features import FEATURE_NAMES
from vroom_features.drift import DRIFT_ALERT_PSI, Reference

RULES = {"monitoring": {"rules": {"enabled": True}}}
MODEL = "vroom-forecast"


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs it (Debian's prometheus package)"
    return path


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rule = one(render(RULES), "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def _alerts() -> dict[str, dict[str, Any]]:
    rule = one(render(RULES), "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def _promtool_test(
    rules_file: Path, tests: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    spec = {"rule_files": [rules_file.name], "evaluation_interval": "1m", "tests": tests}
    path = rules_file.with_name("test.yaml")
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return subprocess.run(
        [_promtool(), "test", "rules", path.name],
        cwd=rules_file.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in {"namespace": NAMESPACE, **labels}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _measured_psi(shift: float) -> float:
    """The PSI our drift code gives ``num_images`` for live rows shifted by ``shift``
    training standard deviations (0: the training distribution itself)."""
    rng = np.random.default_rng(3)
    train = np.column_stack([rng.normal(20, 4, 5000) for _ in FEATURE_NAMES])
    reference = Reference.fit(train, rng.gamma(2, 3, 5000))
    live = train[:1000].copy()
    column = FEATURE_NAMES.index("num_images")
    live[:, column] += shift * 4
    scores = reference.scores(live.astype(np.float32), np.zeros(1000, dtype=np.float32))
    return scores["num_images"]


def test_the_rules_are_valid_promql(rules_file: Path) -> None:
    checked = subprocess.run(
        [_promtool(), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_shifted_inputs_raise_the_drift_alert_and_stable_ones_do_not(rules_file: Path) -> None:
    drifted, stable = _measured_psi(2.0), _measured_psi(0.0)
    assert drifted > DRIFT_ALERT_PSI > stable
    labels = {"model": MODEL, "version": "3", "feature": "num_images"}
    alert = _alerts()["VroomFeatureDrift"]
    summary = f"num_images drifted from the training data of {MODEL} v3"
    fired = {
        "exp_labels": {"severity": "warning", **labels},
        "exp_annotations": {
            "summary": summary,
            "description": alert["annotations"]["description"].replace(
                '{{ $value | printf "%.2f" }}', f"{drifted:.2f}"
            ),
        },
    }
    result = _promtool_test(
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": [_series("vroom_drift_psi", labels, f"{drifted}x40")],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "VroomFeatureDrift", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "VroomFeatureDrift", "exp_alerts": [fired]},
                ],
            },
            {
                "interval": "1m",
                "input_series": [_series("vroom_drift_psi", labels, f"{stable}x40")],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "VroomFeatureDrift", "exp_alerts": []}
                ],
            },
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_errors_and_a_rollback_raise_their_alerts(rules_file: Path) -> None:
    gateway = {"service": "gateway", "route": "/predict", "method": "POST"}
    rolled_back_at = 600  # seconds into the test: after it, within the hour
    result = _promtool_test(
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": [
                    # 100 requests a minute, 10 of them 5xx: a 10 % error share.
                    _series("http_requests_total", {**gateway, "status": "200"}, "0+90x30"),
                    _series("http_requests_total", {**gateway, "status": "503"}, "0+10x30"),
                    _series(
                        "vroom_rollout_rolled_back_timestamp_seconds",
                        {"model_name": MODEL},
                        f"0x10 {rolled_back_at}x20",
                    ),
                    _series(
                        "vroom_model_version_served", {"model_name": MODEL, "version": "3"}, "1x30"
                    ),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "VroomGatewayErrorRate",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": {
                                    "summary": "The gateway answers more than 1% of requests "
                                    "with 5xx",
                                    "description": f"5xx share 10% over 5 minutes in {NAMESPACE}.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "VroomRolloutRolledBack",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "VroomRolloutRolledBack",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "model_name": MODEL},
                                "exp_annotations": _alerts()["VroomRolloutRolledBack"][
                                    "annotations"
                                ]
                                | {"summary": f"A rollout of {MODEL} was rolled back"},
                            }
                        ],
                    },
                    {"eval_time": "15m", "alertname": "VroomNoModelServed", "exp_alerts": []},
                ],
            }
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_served_model_raises_its_alert(rules_file: Path) -> None:
    alert = _alerts()["VroomNoModelServed"]
    result = _promtool_test(
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": [
                    _series(
                        "vroom_model_version_served", {"model_name": MODEL, "version": "3"}, "0x30"
                    )
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "VroomNoModelServed",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": alert["annotations"],
                            }
                        ],
                    }
                ],
            }
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_materializer_and_prediction_log_backlogs_and_dead_letters_raise_their_alerts(
    rules_file: Path,
) -> None:
    alerts = _alerts()
    result = _promtool_test(
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": [
                    # 80 undelivered and 40 unacknowledged: 120 waiting, above 100.
                    _series("vroom_materializer_lag_entries", {}, "80x30"),
                    _series("vroom_materializer_pending_entries", {}, "40x30"),
                    # One entry dead-lettered at minute 10, none after.
                    _series("vroom_materializer_dead_letters", {}, "0x10 1x80"),
                    # The prediction log's drain stops at minute 5: its backlog grows by
                    # 1,000 requests a minute past the 5,000 of the threshold.
                    _series("vroom_prediction_log_backlog_entries", {}, "100x5 1000+1000x30"),
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "VroomMaterializerLag", "exp_alerts": []},
                    {
                        "eval_time": "10m",
                        "alertname": "VroomMaterializerLag",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": alerts["VroomMaterializerLag"]["annotations"],
                            }
                        ],
                    },
                    {"eval_time": "5m", "alertname": "VroomDeadLetters", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "VroomDeadLetters",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": alerts["VroomDeadLetters"]["annotations"],
                            }
                        ],
                    },
                    # Quiet again once the letter is older than the window.
                    {"eval_time": "80m", "alertname": "VroomDeadLetters", "exp_alerts": []},
                    # Above 5,000 from minute 10; the alert waits out its 5 minutes.
                    {
                        "eval_time": "12m",
                        "alertname": "VroomPredictionLogBacklog",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "18m",
                        "alertname": "VroomPredictionLogBacklog",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": alerts["VroomPredictionLogBacklog"][
                                    "annotations"
                                ],
                            }
                        ],
                    },
                ],
            }
        ],
    )
    assert result.returncode == 0, result.stdout + result.stderr
