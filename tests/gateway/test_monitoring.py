"""``GET /monitoring``: live inputs shifted away from the training data raise the drift
score, in the gateway's report and in the predictor's Prometheus gauges."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from tests.gateway.conftest import dead_port
from tests.predictor.conftest import Served
from vroom_cli.main import app as vroom
from vroom_cli.monitor import chart, most_drifted, table
from vroom_features.drift import DRIFT_ALERT_PSI, PREDICTION
from vroom_gateway.app import create_app
from vroom_predictor.drift import DRIFT_MIN_ROWS

pytestmark = pytest.mark.integration

#: A listing far outside any fleet: five times the photos, a novel of a description.
SHIFTED = {
    "technology": 1,
    "actual_price": 40.0,
    "recommended_price": 40.0,
    "num_images": 80,
    "street_parked": 1,
    "description": 20_000,
}


def _report(client: TestClient, served: Served) -> dict[str, object]:
    response = client.get("/monitoring")
    assert response.status_code == 200, response.text
    body = response.json()
    (mine,) = [m for m in body["models"] if m["model"] == served.settings.model_name]
    return {"body": body, "model": mine}


def test_shifted_inputs_raise_the_drift_score_and_gauge(client: TestClient, served: Served) -> None:
    version = served.promote_new_version()  # a new version: a window of its own
    served.wait_version(version)
    fresh = _report(client, served)["model"]
    assert fresh["version"] == version
    assert fresh["window_rows"] == 0
    assert fresh["psi"] is None  # not scored before min_rows
    assert fresh["min_rows"] == DRIFT_MIN_ROWS
    assert fresh["reference_rows"] > 0

    rows = DRIFT_MIN_ROWS + 50
    response = client.post("/predict/batch", json=[SHIFTED] * rows)
    assert response.status_code == 200, response.text

    report = _report(client, served)
    model, body = report["model"], report["body"]
    assert model["window_rows"] == rows
    psi = model["psi"]
    assert psi["num_images"] > DRIFT_ALERT_PSI
    assert psi["description"] > DRIFT_ALERT_PSI
    assert PREDICTION in psi
    assert f"{served.settings.model_name} v{version}: num_images" in body["drifted"]
    assert body["threshold"] == DRIFT_ALERT_PSI
    shares = model["distributions"]["num_images"]
    assert len(shares["bins"]) == len(shares["train"]) == len(shares["live"])
    assert sum(shares["live"]) == pytest.approx(1.0)

    # What `vroom monitor` prints of this very report.
    console = Console(record=True, width=120)
    console.print(table(body))
    pick = most_drifted(body)
    assert pick is not None
    console.print(chart(*pick))
    text = console.export_text()
    assert f"{served.settings.model_name} v{version}" in text
    assert f"{psi['num_images']:.3f}" in text
    top = max(psi, key=lambda name: psi[name])
    assert f"{top} ({served.settings.model_name} v{version}, PSI {psi[top]:.3f})" in text
    assert "█" in text

    metrics = httpx.get(f"{served.rest}/metrics", timeout=10).text
    pattern = (
        r'vroom_drift_psi\{feature="num_images",model="'
        + re.escape(served.settings.model_name)
        + r'",version="'
        + re.escape(version)
        + r'"\} ([0-9.e+-]+)'
    )
    match = re.search(pattern, metrics)
    assert match, metrics[:2000]
    assert float(match.group(1)) == pytest.approx(psi["num_images"])


def test_monitoring_without_the_predictor_is_503_naming_it(served: Served) -> None:
    settings = served.settings.with_overrides(predictor_http_port=dead_port())
    with TestClient(create_app(settings)) as client:
        response = client.get("/monitoring")
    assert response.status_code == 503
    assert "predictor" in response.json()["detail"]


def test_vroom_monitor_names_a_gateway_that_does_not_answer() -> None:
    url = f"http://127.0.0.1:{dead_port()}"
    result = CliRunner().invoke(vroom, ["monitor", "--url", url])
    assert result.exit_code != 0
    assert f"the gateway at {url} does not answer" in result.output
