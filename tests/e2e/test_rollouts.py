"""Progressive rollouts on the whole local stack, under continuous concurrent load.

Each test registers a candidate built from the champion's own model (the same model,
or one of the bad kinds of ``tests/rollout/candidates.py``), starts a rollout through
``POST /rollout`` while clients keep predicting, and waits for the controller's
decision. Every user request must succeed whatever the candidate does; the figures
(requests, failures, time to decision) are printed for the record.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from tests.conftest import register_model_dir
from tests.e2e.conftest import Stack
from tests.rollout import candidates
from vroom_cli.stack import status, up
from vroom_features.contract import REGISTRATION_FILE
from vroom_registry import ALIAS_CHAMPION, TAG_ROLLBACK_REASON

pytestmark = pytest.mark.integration

#: Requests of each client thread vary their vehicle, so the split is visible: the
#: assignment is by request, and a repeated request keeps its version.
N_VEHICLES = 300
FINAL = ("promoted", "rolled_back")


def vehicles(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    # description != 120: the "failing" candidate answers the probe row only.
    return [
        {
            "technology": rng.randint(0, 1),
            "actual_price": round(rng.uniform(20, 150), 2),
            "recommended_price": round(rng.uniform(20, 150), 2),
            "num_images": rng.randint(0, 12),
            "street_parked": rng.randint(0, 1),
            "description": rng.choice([d for d in range(0, 400, 7) if d != 120]),
        }
        for _ in range(N_VEHICLES)
    ]


@dataclass
class Answer:
    at: float
    status: int | str
    version: str | None
    request: tuple[str, int]
    """The request sent: its path and the vehicle (id, or index of its body)."""


@dataclass
class Load:
    """Clients predicting until stopped: ``/predict`` with varied vehicles and
    ``/predict/id`` with fleet vehicles; every answer is kept."""

    url: str
    clients: int = 3
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, index: int) -> None:
        bodies = vehicles()
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = index
            while not self._stop.is_set():
                i += 1
                key = i % N_VEHICLES
                sent = ("/predict/id", 1 + key) if index == 0 else ("/predict", key)
                try:
                    if index == 0:
                        response = client.post("/predict/id", json={"vehicle_id": 1 + key})
                    else:
                        response = client.post("/predict", json=bodies[key])
                except httpx.HTTPError as exc:
                    self.answers.append(Answer(time.time(), type(exc).__name__, None, sent))
                    continue
                version = response.json().get("model_version") if response.is_success else None
                self.answers.append(Answer(time.time(), response.status_code, version, sent))
                time.sleep(0.002)  # leave the two cores to the stack

    def __enter__(self) -> Load:
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    def share(self, version: str, start: float, end: float) -> tuple[float, int]:
        window = [a for a in self.answers if start <= a.at < end and a.status == 200]
        return (sum(a.version == version for a in window) / len(window) if window else 0.0), len(
            window
        )


@dataclass(frozen=True)
class Outcome:
    view: dict[str, Any]
    load: Load
    seconds: float

    def report(self, kind: str) -> None:
        failed = len(self.load.failures())
        print(  # the closing note quotes these
            f"\nROLLOUT {kind}: {len(self.load.answers)} requests, {failed} failed; "
            f"{self.view['state']} after {self.seconds:.1f} s: {self.view['reason']}"
        )


@pytest.fixture(scope="module")
def champion_dir(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack champion's model directory, downloaded once."""
    settings = stack.settings
    uri = MlflowClient(settings.mlflow_uri).get_model_version_download_uri(
        settings.model_name, champion_now(stack)
    )
    path = Path(
        download_artifacts(
            artifact_uri=uri,
            dst_path=str(tmp_path_factory.mktemp("champion")),
            tracking_uri=settings.mlflow_uri,
        )
    )
    (path / REGISTRATION_FILE).unlink(missing_ok=True)
    return path


@pytest.fixture
def make_candidate(stack: Stack, champion_dir: Path, tmp_path: Path) -> Callable[..., str]:
    def make(kind: Callable[..., Path], **options: Any) -> str:
        model_dir = kind(champion_dir, tmp_path / kind.__name__, **options)
        return register_model_dir(stack.settings, model_dir, score=3.0)

    return make


def champion_now(stack: Stack) -> str:
    client = MlflowClient(stack.settings.mlflow_uri)
    return str(client.get_model_version_by_alias(stack.settings.model_name, ALIAS_CHAMPION).version)


def wait_state(
    api: httpx.Client, done: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = api.get("/rollout").json()
        if done(view):
            return view
        time.sleep(0.1)
    raise AssertionError(f"rollout did not get there within {timeout_s:g} s: {view}")


@pytest.fixture
def roll(stack: Stack, api: httpx.Client) -> Iterator[Callable[..., Outcome]]:
    """Start a rollout of a version under load and wait for its decision."""
    started: list[str] = []

    def run(version: str, timeout_s: float = 120.0, **schedule: Any) -> Outcome:
        with Load(stack.url) as load:
            time.sleep(0.5)  # traffic before the start
            began = time.monotonic()
            response = api.post("/rollout", json={"version": version, **schedule})
            assert response.status_code == 200, response.text
            started.append(response.json()["rollout_id"])
            view = wait_state(api, lambda v: v["state"] in FINAL, timeout_s)
            seconds = time.monotonic() - began
            time.sleep(1.0)  # traffic after the decision
        return Outcome(view, load, seconds)

    yield run
    # Never leave a rollout running for the next test.
    view = api.get("/rollout").json()
    if view["state"] not in (*FINAL, "idle"):
        api.post("/rollout/abort", json={"reason": "test teardown"})


def assert_rolled_back_before_any_user_saw_it(outcome: Outcome, version: str) -> None:
    view = outcome.view
    assert view["state"] == "rolled_back", view
    assert outcome.load.failures() == []
    assert [a for a in outcome.load.answers if a.version == version] == []
    assert "canary" not in [t["state"] for t in view["history"]]


def test_a_candidate_that_fails_to_load_never_receives_traffic(
    stack: Stack, make_candidate: Callable[..., str], roll: Callable[..., Outcome]
) -> None:
    champion = champion_now(stack)
    version = make_candidate(candidates.unloadable)
    outcome = roll(version)
    outcome.report("unloadable")
    assert_rolled_back_before_any_user_saw_it(outcome, version)
    assert [t["state"] for t in outcome.view["history"]] == ["starting", "rolled_back"]
    assert outcome.view["reason"].startswith(f"candidate v{version} failed to load")
    assert champion_now(stack) == champion


def test_a_far_off_candidate_is_rolled_back_while_shadowing(
    stack: Stack, make_candidate: Callable[..., str], roll: Callable[..., Outcome]
) -> None:
    champion = champion_now(stack)
    version = make_candidate(candidates.constant, value=50.0)
    outcome = roll(version)
    outcome.report("constant 50")
    assert_rolled_back_before_any_user_saw_it(outcome, version)
    assert outcome.view["reason"].startswith("disagreement_median")
    tags = (
        MlflowClient(stack.settings.mlflow_uri)
        .get_model_version(stack.settings.model_name, version)
        .tags
    )
    assert tags[TAG_ROLLBACK_REASON] == outcome.view["reason"]
    assert champion_now(stack) == champion


def test_a_candidate_that_errors_is_rolled_back_without_failing_a_user(
    stack: Stack, make_candidate: Callable[..., str], roll: Callable[..., Outcome]
) -> None:
    champion = champion_now(stack)
    version = make_candidate(candidates.failing)
    # Straight to a canary step with no shadow time: users' requests reach the
    # candidate, fail there, and are answered by the champion.
    outcome = roll(version, shadow_seconds=0)
    outcome.report("errors on every inference")
    view = outcome.view
    assert view["state"] == "rolled_back", view
    assert view["reason"].startswith("error_rate"), view["reason"]
    assert outcome.load.failures() == []
    assert [a for a in outcome.load.answers if a.version == version] == []
    assert champion_now(stack) == champion


def test_a_slow_candidate_is_rolled_back_on_latency(
    stack: Stack, make_candidate: Callable[..., str], roll: Callable[..., Outcome]
) -> None:
    champion = champion_now(stack)
    version = make_candidate(candidates.slow, extra_ms=40.0)
    outcome = roll(version)
    outcome.report("slow (+40 ms)")
    assert outcome.view["state"] == "rolled_back", outcome.view
    assert outcome.view["reason"].startswith("p99_ms"), outcome.view["reason"]
    assert outcome.load.failures() == []
    assert champion_now(stack) == champion


def test_a_good_candidate_goes_shadow_canary_promoted_and_the_split_follows(
    stack: Stack, make_candidate: Callable[..., str], roll: Callable[..., Outcome]
) -> None:
    version = make_candidate(candidates.same)
    outcome = roll(version, shadow_seconds=3, step_seconds=5)
    outcome.report("good")
    view = outcome.view
    assert view["state"] == "promoted", view
    assert outcome.load.failures() == []
    history = view["history"]
    assert [(t["state"], t["weight"]) for t in history] == [
        ("starting", 0),
        ("shadow", 0),
        ("canary", 10),
        ("canary", 50),
        ("promoting", 50),
        ("promoted", 100),
    ]
    at = {f"{t['state']}-{t['weight']}": t["at"] for t in history}
    # The served version moves as the weights say (margins for a 2-core machine).
    shadow, n = outcome.load.share(version, at["shadow-0"], at["canary-10"])
    assert shadow == 0.0
    assert n > 50
    ten, n = outcome.load.share(version, at["canary-10"] + 0.5, at["canary-50"])
    assert 0.03 <= ten <= 0.2, (ten, n)
    half, n = outcome.load.share(version, at["canary-50"] + 0.5, at["promoting-50"])
    assert 0.35 <= half <= 0.65, (half, n)
    after, n = outcome.load.share(version, at["promoted-100"] + 0.5, time.time())
    late = [
        (round(a.at - at["promoted-100"], 2), a.version, a.request)
        for a in outcome.load.answers
        if a.at >= at["promoted-100"] + 0.5 and a.version != version
    ]
    assert after == 1.0, (late[:20], len(late), at)
    assert n > 10
    assert champion_now(stack) == version
    assert httpx.get(f"{stack.url}/health").json()["model_version"] == version


def test_a_killed_controller_is_replaced_and_the_rollout_resumes(
    stack: Stack, api: httpx.Client, make_candidate: Callable[..., str]
) -> None:
    version = make_candidate(candidates.same)
    settings = stack.settings
    with Load(stack.url) as load:
        response = api.post(
            "/rollout", json={"version": version, "shadow_seconds": 2, "step_seconds": 3}
        )
        assert response.status_code == 200, response.text
        wait_state(api, lambda v: v["state"] == "canary", 60)
        pid = status(settings, ["controller"]).service("controller").pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # mid-rollout, no chance to release the lease
        view = wait_state(api, lambda v: v["state"] in FINAL, 120)
    assert view["state"] == "promoted", view
    assert load.failures() == []
    assert view["controller"] is not None
    assert not view["controller"].endswith(f":{pid}")
    assert status(settings, ["controller"]).service("controller").pid != pid
    up(settings, services=["controller"])  # healthy again, whatever supervisord did


def test_a_restarted_gateway_keeps_the_weights(
    stack: Stack, api: httpx.Client, make_candidate: Callable[..., str]
) -> None:
    version = make_candidate(candidates.same)
    settings = stack.settings
    response = api.post(
        "/rollout", json={"version": version, "shadow_seconds": 1, "step_seconds": 600}
    )
    assert response.status_code == 200, response.text
    try:
        with Load(stack.url) as load:
            before = wait_state(api, lambda v: v["state"] == "canary", 60)
        pid = status(settings, ["gateway"]).service("gateway").pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        wait_gone = time.monotonic() + 30
        while status(settings, ["gateway"]).service("gateway").pid == pid:
            assert time.monotonic() < wait_gone
            time.sleep(0.2)
        up(settings, services=["gateway"])
        after = api.get("/rollout").json()
        assert (after["rollout_id"], after["state"], after["weight"]) == (
            before["rollout_id"],
            "canary",
            10,
        )
        with Load(stack.url) as load:
            time.sleep(4)
        share, n = load.share(version, 0, time.time())
        assert load.failures() == []
        assert 0.03 <= share <= 0.2, (share, n)
        # A request keeps its version within the step.
        by_request: dict[tuple[str, int], set[str | None]] = {}
        for a in load.answers:
            by_request.setdefault(a.request, set()).add(a.version)
        mixed = {request: v for request, v in by_request.items() if len(v) > 1}
        assert mixed == {}
    finally:
        aborted = api.post("/rollout/abort", json={"reason": "end of test"})
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["state"] == "rolled_back"
    assert aborted.json()["reason"] == "aborted by gateway API: end of test"
    again = api.post("/rollout/abort")
    assert again.status_code == 409
    assert "no rollout" in again.json()["detail"]
