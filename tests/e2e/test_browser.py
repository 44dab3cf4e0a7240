"""A real browser (Debian's headless Chromium, driven by Playwright) on a dashboard page
served from another origin uses every endpoint and SSE stream of the gateway, as the
web dashboard of the Ray Serve version does: CORS preflights for JSON POSTs and
DELETEs, simple GETs, EventSource on the four streams, the X-Request-ID header read,
the API key sent as a bearer token, and refusals readable by the page."""

from __future__ import annotations

import functools
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from mlflow import MlflowClient
from playwright.sync_api import Page, sync_playwright

from tests.e2e.conftest import Stack
from vroom_cli.bench import SAMPLE_VEHICLE as VEHICLE
from vroom_common.events import DAG_MATERIALIZE, DAG_PIPELINE

pytestmark = pytest.mark.integration

PAGE_DIR = Path(__file__).parent / "dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STREAMS = {
    "model": "/events",
    "vehicles": "/vehicles/events",
    "pipelines": "/pipelines/events",
    "rollout": "/rollout/events",
}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def dashboard(stack: Stack) -> Iterator[str]:
    """The page's origin: a static server on the dashboard port, not the gateway's."""
    parts = urlsplit(stack.dashboard_origin)
    handler = functools.partial(_Quiet, directory=str(PAGE_DIR))
    server = ThreadingHTTPServer((parts.hostname or "127.0.0.1", parts.port or 80), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stack.dashboard_origin
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page(stack: Stack, dashboard: str) -> Iterator[Page]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Chromium is missing: `make test` installs it (scripts/ensure-deb-tool.sh)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            query = urlencode({"api": stack.url, "key": stack.api_key})
            page.goto(f"{dashboard}/index.html?{query}")
            page.wait_for_function("window.vroom !== undefined")
            yield page
        finally:
            browser.close()


def call(page: Page, method: str, path: str, body: Any = None, **options: Any) -> dict[str, Any]:
    """``fetch`` from the page; ``ok`` false when the browser blocked it (CORS)."""
    args = {"method": method, "path": path, "body": body, "options": options}
    result: dict[str, Any] = page.evaluate(
        "({method, path, body, options}) => "
        "window.vroom.call(method, path, body === null ? undefined : body, options)",
        args,
    )
    return result


def answered(page: Page, method: str, path: str, body: Any = None, **options: Any) -> Any:
    """The JSON body of a call the browser let through and the gateway answered 200."""
    result = call(page, method, path, body, **options)
    assert result["ok"], (method, path, result)
    assert result["status"] == 200, (method, path, result)
    assert result["requestId"], (method, path)  # exposed to the page by CORS
    return result["json"]


def wait_event(
    page: Page, stream: str, match: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events: list[dict[str, Any]] = page.evaluate(
            "name => window.vroom.streams[name].events", stream
        )
        for event in events:
            if match(event):
                return event
        time.sleep(0.2)
    raise AssertionError(f"no matching event on {STREAMS[stream]} within {timeout_s:g} s")


def test_a_page_on_another_origin_uses_every_endpoint_and_stream(page: Page, stack: Stack) -> None:
    for name, path in STREAMS.items():
        page.evaluate("([name, path]) => window.vroom.listen(name, path)", [name, path])
    page.wait_for_function("Object.values(window.vroom.streams).every(s => s.open)", timeout=15_000)
    # /events sends the current health on connect.
    health_event = wait_event(page, "model", lambda e: e["type"] == "health-changed", 15)
    assert health_event["model_version"] == stack.champion_version

    health = answered(page, "GET", "/health", auth=False)
    assert (health["status"], health["model_version"]) == ("ok", stack.champion_version)

    one = answered(page, "POST", "/predict", VEHICLE, auth=False)
    assert one["model_version"] == stack.champion_version
    batch = answered(page, "POST", "/predict/batch", [VEHICLE, VEHICLE], auth=False)
    assert len(batch["predictions"]) == 2
    by_id = answered(page, "POST", "/predict/id", {"vehicle_id": 1}, auth=False)
    assert isinstance(by_id["predicted_reservations"], float)

    # A mutation without the key: refused, and the page can read why.
    refused = call(page, "POST", "/vehicles", VEHICLE, auth=False)
    assert refused["ok"], refused
    assert refused["status"] == 401
    assert refused["challenge"].startswith("Bearer")
    wrong = call(page, "POST", "/vehicles", VEHICLE, key="not-the-key-" + "x" * 10)
    assert wrong["status"] == 403

    saved = answered(page, "POST", "/vehicles", VEHICLE)
    vehicle_id = saved["vehicle_id"]
    assert saved["event_published"] is True
    wait_event(page, "vehicles", lambda e: e["vehicle_id"] == vehicle_id, 60)
    listed = answered(page, "GET", "/vehicles", auth=False)
    assert any(v["vehicle_id"] == vehicle_id for v in listed)
    features = answered(page, "GET", f"/vehicles/{vehicle_id}/features", auth=False)
    assert (features["materialized"], features["store"]) == (True, "online")
    every = answered(page, "GET", "/vehicles/features", auth=False)
    assert len(every) == len(listed)
    stores = answered(page, "GET", "/stores", auth=False)
    assert isinstance(stores["offline_store"]["last_modified"], float)
    model = answered(page, "GET", "/model", auth=False)
    assert model["version"] == stack.champion_version
    monitoring = answered(page, "GET", "/monitoring", auth=False)
    (served,) = [m for m in monitoring["models"] if m["version"] == stack.champion_version]
    assert served["window_rows"] >= 4  # the page's own predictions above at least
    assert isinstance(monitoring["threshold"], float)
    deleted = answered(page, "DELETE", f"/vehicles/{vehicle_id}")
    assert deleted == {"status": "deleted", "vehicle_id": vehicle_id}

    raw = answered(page, "POST", "/benchmark", {"vehicle": VEHICLE, "n_iterations": 5})
    assert (raw["n_iterations"], raw["source"]) == (5, "raw")
    online = answered(page, "POST", "/benchmark/id", {"vehicle_id": 1, "n_iterations": 5})
    assert online["source"] == "online_store"
    reloaded = answered(page, "POST", "/reload")
    assert reloaded["current_version"] == stack.champion_version

    materialize = answered(page, "POST", "/materialize")
    assert materialize["dag_id"] == DAG_MATERIALIZE
    wait_event(page, "pipelines", lambda e: e["dag_run_id"] == materialize["dag_run_id"], 300)
    train = answered(page, "POST", "/train")
    assert train["dag_id"] == DAG_PIPELINE
    trained = wait_event(page, "pipelines", lambda e: e["dag_run_id"] == train["dag_run_id"], 600)
    assert trained["state"] == "success"

    # The new version is registered (not better than the champion on the same data):
    # roll it out from the page, then abort, following it on /rollout/events.
    mlflow = MlflowClient(stack.settings.mlflow_uri)
    newest = max(
        int(v.version) for v in mlflow.search_model_versions(f"name='{stack.settings.model_name}'")
    )
    status = answered(page, "GET", "/rollout", auth=False)
    if status["state"] not in ("shadow", "canary", "starting"):
        started = answered(page, "POST", "/rollout", {"version": str(newest)})
        assert started["candidate_version"] == str(newest)
    wait_event(page, "rollout", lambda e: e["state"] in ("shadow", "canary"), 60)
    aborted = answered(page, "POST", "/rollout/abort", {"reason": "browser test"})
    assert aborted["state"] == "rolled_back"
    rolled_back = wait_event(page, "rollout", lambda e: e["state"] == "rolled_back", 30)
    assert rolled_back["candidate_version"] == str(newest)
    promote = call(page, "POST", "/rollout/promote")
    assert promote["status"] == 409  # nothing left to promote: readable by the page

    # Nothing on the way broke a stream.
    errors = page.evaluate("Object.values(window.vroom.streams).map(s => s.errors)")
    assert errors == [0, 0, 0, 0]


def test_a_page_on_an_origin_not_allowed_is_blocked(stack: Stack, page: Page) -> None:
    """The same calls from an origin outside the allow-list never reach the page."""
    page.goto("about:blank")
    try:
        blocked = page.evaluate(
            """async (api) => {
                try {
                    await fetch(api + "/predict", {method: "POST",
                        headers: {"Content-Type": "application/json"}, body: "{}"});
                    return "answered";
                } catch (error) { return String(error); }
            }""",
            stack.url,
        )
    finally:
        query = urlencode({"api": stack.url, "key": stack.api_key})
        page.goto(f"{stack.dashboard_origin}/index.html?{query}")
    assert "Failed to fetch" in blocked
