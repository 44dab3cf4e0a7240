"""The rollout state machine, the step rule, the signal histograms, and the controller on
a real Redis (the serving side and the registry are stand-ins here: see
test_kubernetes_deployer.py and tests/e2e/test_rollouts.py for the real ones)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from tests.rollout.stand_ins import (
    Clock,
    RecordingRegistry,
    ScriptedDeployer,
    announced,
    feed,
    make_controller,
    send,
)
from vroom_common.errors import Conflict, DependencyUnavailable
from vroom_common.events import RolloutRequested
from vroom_rollout.base import RolloutFailed
from vroom_rollout.progressive import machine
from vroom_rollout.progressive.controller import Controller
from vroom_rollout.progressive.machine import Policy, RolloutState, judge
from vroom_rollout.progressive.requests import request
from vroom_rollout.progressive.signals import DISAGREEMENT, LATENCY_MS, SignalBatch, summarize
from vroom_rollout.progressive.store import LeaseLost, RolloutStore
from vroom_rollout.settings import RolloutSettings

pytestmark = pytest.mark.integration

POLICY = Policy(
    steps=[10, 50],
    shadow_seconds=10,
    step_seconds=10,
    min_requests=20,
    max_error_rate=0.05,
    max_p99_ratio=1.5,
    p99_slack_ms=5,
    max_disagreement=1.0,
)


# --- histograms ---------------------------------------------------------------------------


def test_percentiles_from_buckets_are_within_the_bucket_width() -> None:
    values = [0.5 + 0.01 * i for i in range(1000)]  # 0.5 .. 10.49 ms
    counts: dict[int, int] = {}
    for v in values:
        counts[LATENCY_MS.index(v)] = counts.get(LATENCY_MS.index(v), 0) + 1
    for q in (0.5, 0.99):
        exact = sorted(values)[int(q * len(values)) - 1]
        estimate = LATENCY_MS.quantile(counts, q)
        assert estimate is not None
        assert abs(estimate - exact) / exact < 0.05, (q, estimate, exact)
    assert DISAGREEMENT.index(0.0) == 0
    assert DISAGREEMENT.value(0) == 0.0
    assert LATENCY_MS.index(float("nan")) == 0
    assert LATENCY_MS.index(1e12) == LATENCY_MS.count


def test_counts_of_two_replicas_add_up() -> None:
    merged: dict[str, int] = {}
    for replica_latency, errors in ((2.0, 0), (4.0, 3)):
        batch = SignalBatch()
        for _ in range(50):
            batch.observe("k", "7", replica_latency, ok=True)
            batch.compare("k", "7", 0.25)
        for _ in range(errors):
            batch.observe("k", "7", 0.0, ok=False)
        for field, count in batch.drain()["k"].items():
            merged[field] = merged.get(field, 0) + count
    signals = summarize(merged)["7"]
    assert signals.requests == 103
    assert signals.errors == 3
    assert signals.error_rate == pytest.approx(3 / 103)
    assert signals.p50_ms == pytest.approx(2.0, rel=0.05)
    assert signals.p99_ms == pytest.approx(4.0, rel=0.05)
    assert signals.compared == 100
    assert signals.disagreement_median == pytest.approx(0.25, rel=0.05)


# --- the step rule ------------------------------------------------------------------------


def shadow_state(now: float = 1000.0) -> RolloutState:
    start = machine.started(
        RolloutState(model_name="m"),
        rollout_id="r1",
        champion_version="1",
        candidate_version="2",
        policy=POLICY,
        now=now,
        requested_by="test",
    )
    return machine.shadowing(start, now, "ready")


def signals_of(
    *,
    n: int = 40,
    errors: int = 0,
    candidate_ms: float = 2.0,
    champion_ms: float = 2.0,
    gap: float = 0.1,
) -> dict[str, object]:
    batch = SignalBatch()
    for _ in range(n):
        batch.observe("k", "1", champion_ms, ok=True)
        batch.observe("k", "2", candidate_ms, ok=True)
        batch.compare("k", "2", gap)
    for _ in range(errors):
        batch.observe("k", "2", 0.0, ok=False)
    return summarize(batch.drain()["k"])  # type: ignore[return-value]


def test_judge_waits_for_min_requests_then_time() -> None:
    state = shadow_state()
    few = judge(state, signals_of(n=5), 1001.0)  # type: ignore[arg-type]
    assert few.action == "wait"
    assert "5 of 20 requests" in few.reason
    early = judge(state, signals_of(), 1005.0)  # type: ignore[arg-type]
    assert early.action == "wait"
    assert "5 of 10 s" in early.reason
    assert judge(state, signals_of(), 1010.5).action == "advance"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("signals", "named"),
    [
        ({"errors": 10}, "error_rate 0.200 > 0.05"),
        ({"candidate_ms": 40.0}, "p99_ms"),
        ({"gap": 44.0}, "disagreement_median"),
    ],
)
def test_judge_rolls_back_on_any_breach_naming_it(signals: dict[str, float], named: str) -> None:
    verdict = judge(shadow_state(), signals_of(**signals), 1001.0)  # type: ignore[arg-type]
    assert verdict.action == "rollback"
    assert verdict.reason.startswith(named), verdict.reason


def test_schedule_goes_through_every_step_then_promoting() -> None:
    state = shadow_state()
    weights = []
    while state.state != "promoting":
        state = machine.advanced(state, 2000.0, "ok", {})
        weights.append((state.state, state.split))
    assert weights == [("canary", 10), ("canary", 50), ("promoting", 50)]
    done = machine.promoted(state, 2001.0, "served")
    assert (done.state, done.champion_version, done.split) == ("promoted", "2", 0)
    assert [t.state for t in done.history] == [
        "starting",
        "shadow",
        "canary",
        "canary",
        "promoting",
        "promoted",
    ]


# --- the controller on Redis --------------------------------------------------------------


def test_a_good_candidate_goes_through_every_step_and_is_promoted(
    settings: RolloutSettings, store: RolloutStore, redis_client: redis.Redis
) -> None:
    clock, deployer, registry = Clock(), ScriptedDeployer(), RecordingRegistry()
    controller = make_controller(settings, store, deployer, registry, clock)
    send(store, "start", version="2")
    state = controller.tick()
    assert state.state == "shadow"
    assert registry.aliases["rollout"] == "2"
    for expected in ("canary", "canary", "promoted"):
        feed(redis_client, state)
        assert controller.tick().state == state.state  # enough requests, not enough time
        clock.now += 10.5
        state = controller.tick()
        assert state.state == expected, state.reason
    assert state.champion_version == "2"
    assert registry.aliases["champion"] == "2"
    assert "rollout" not in registry.aliases
    assert state.cleaned_up
    assert deployer.calls == [
        ("deploy_candidate", "2"),
        ("serve_champion", "2"),
        ("remove_candidate",),
    ]
    events = announced(redis_client)
    assert [(e.state, e.weight) for e in events] == [
        ("starting", 0),
        ("shadow", 0),
        ("canary", 10),
        ("canary", 50),
        ("promoting", 50),
        ("promoted", 100),
    ]
    assert all(e.rollout_id == state.id for e in events)


@pytest.mark.parametrize(
    ("signals", "named"),
    [
        ({"errors": 30}, "error_rate"),
        ({"candidate_ms": 50.0}, "p99_ms"),
        ({"gap": 49.0}, "disagreement_median"),
    ],
)
def test_a_breach_rolls_back_at_once_and_tags_the_version(
    settings: RolloutSettings,
    store: RolloutStore,
    redis_client: redis.Redis,
    signals: dict[str, float],
    named: str,
) -> None:
    clock, deployer, registry = Clock(), ScriptedDeployer(), RecordingRegistry()
    controller = make_controller(settings, store, deployer, registry, clock)
    send(store, "start", version="2")
    state = controller.tick()
    feed(redis_client, state, **signals)
    state = controller.tick()  # no time passes: a breach needs no step time
    assert state.state == "rolled_back"
    assert state.reason
    assert state.reason.startswith(named)
    assert registry.aliases["champion"] == "1"
    assert "rollout" not in registry.aliases
    assert registry.tags[("2", "rollback_reason")] == state.reason
    assert ("remove_candidate",) in deployer.calls
    assert state.cleaned_up
    assert state.history[-1].signals["2"].requests >= 40


def test_a_candidate_that_fails_to_load_never_shadows(
    settings: RolloutSettings, store: RolloutStore, redis_client: redis.Redis
) -> None:
    deployer = ScriptedDeployer(candidate_error=RolloutFailed("no model.onnx"))
    controller = make_controller(settings, store, deployer, RecordingRegistry(), Clock())
    send(store, "start", version="2")
    state = controller.tick()
    assert state.state == "rolled_back"
    assert state.reason == "candidate v2 failed to load: no model.onnx"
    assert [e.state for e in announced(redis_client)] == ["starting", "rolled_back"]


def test_refused_requests_name_the_rule(settings: RolloutSettings, store: RolloutStore) -> None:
    controller = make_controller(settings, store, ScriptedDeployer(), RecordingRegistry(), Clock())
    for fields, why in (
        ({"version": "1"}, "v1 is already champion"),
        ({"version": "9"}, "model has no version 9"),
        ({}, "a start request needs a version"),
    ):
        send(store, "start", **fields)
        assert controller.tick().last_command.detail == why  # type: ignore[union-attr]
    send(store, "abort")
    assert "no rollout" in controller.tick().last_command.detail  # type: ignore[union-attr]
    send(store, "start", version="2")
    send(store, "start", version="3")
    state = controller.tick()
    assert state.candidate_version == "2"
    assert state.last_command is not None
    assert not state.last_command.accepted
    assert "abort or promote it first" in state.last_command.detail


@pytest.mark.parametrize("at", ["starting", "shadow", "canary", "promoting"])
@pytest.mark.parametrize("action", ["abort", "promote"])
def test_abort_and_promote_work_at_every_state(
    settings: RolloutSettings, store: RolloutStore, redis_client: redis.Redis, at: str, action: str
) -> None:
    clock, registry = Clock(), RecordingRegistry()
    deployer = ScriptedDeployer(candidate_ready_after=1_000 if at == "starting" else 0)
    controller = make_controller(settings, store, deployer, registry, clock)
    send(store, "start", version="2")
    state = controller.tick()
    if at in ("canary", "promoting"):
        feed(redis_client, state)
        clock.now += 10.5
        state = controller.tick()
    if at == "promoting":
        deployer.serve_champion = lambda version, **_: deployer.calls.append(("serve", version))  # type: ignore[method-assign]
        send(store, "promote")
        state = controller.tick()
    assert state.state == at
    send(store, action)
    state = controller.tick()
    if action == "abort":
        assert state.state == "rolled_back"
        assert state.reason == "aborted by test"
        assert registry.aliases["champion"] == "1"  # put back even after a switch
    else:
        assert state.state == ("promoting" if at == "promoting" else "promoted"), state.reason
        if at != "promoting":
            assert registry.aliases["champion"] == "2"


def test_only_the_lease_holder_writes_and_a_successor_resumes(
    settings: RolloutSettings, store: RolloutStore, redis_client: redis.Redis
) -> None:
    clock, registry = Clock(), RecordingRegistry()
    first = make_controller(settings, store, ScriptedDeployer(), registry, clock, owner="c1")
    send(store, "start", version="2")
    state = first.tick()
    assert state.state == "shadow"
    second = make_controller(settings, store, ScriptedDeployer(), registry, clock, owner="c2")
    with pytest.raises(LeaseLost):
        second._commit(state)
    # c1 dies: its lease expires, c2 takes it and carries on from the stored state.
    redis_client.delete(f"vroom:rollout:{settings.model_name}:lease")
    assert store.acquire("c2", settings.rollout_lease_ttl_s)
    feed(redis_client, state)
    clock.now += 10.5
    resumed = second.tick()
    assert (resumed.id, resumed.state, resumed.split) == (state.id, "canary", 10)
    feed(redis_client, resumed)
    clock.now += 10.5
    with pytest.raises(LeaseLost):
        first.tick()  # would advance the step: refused, c2 owns the rollout now
    assert store.load().split == 10


def test_transitions_are_timed_after_the_work_they_waited_for(
    settings: RolloutSettings, store: RolloutStore, redis_client: redis.Redis
) -> None:
    """A load or reload takes a while: the shadow step starts once the candidate is
    ready, and ``promoted`` is stamped once the champion serves the new version."""
    clock, deployer, registry = Clock(), ScriptedDeployer(), RecordingRegistry()
    controller = make_controller(settings, store, deployer, registry, clock)
    load_s = 3.0

    def slow(record: Callable[..., None]) -> Callable[..., None]:
        def run(version: str, **options: bool) -> None:
            clock.now += load_s
            record(version, **options)

        return run

    deployer.deploy_candidate = slow(deployer.deploy_candidate)  # type: ignore[method-assign]
    deployer.serve_champion = slow(deployer.serve_champion)  # type: ignore[method-assign]
    began = clock.now
    send(store, "start", version="2", steps=[50])
    state = controller.tick()
    assert state.state == "shadow"
    assert state.step_started_at == began + load_s
    for _ in ("canary", "promoting"):
        feed(redis_client, state)
        clock.now += 10.5
        state = controller.tick()
    assert state.state == "promoted", state.reason
    promoting, promoted = state.history[-2:]
    assert promoted.at - promoting.at == load_s


def test_the_holders_own_renewals_never_cost_it_the_lease(
    settings: RolloutSettings, store: RolloutStore
) -> None:
    """A renewal touches the watched lease key between WATCH and EXEC of a commit."""
    assert store.acquire("c1", 5.0)
    stop = threading.Event()

    def renew() -> None:
        while not stop.is_set():
            store.acquire("c1", 5.0)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    state = store.load()
    try:
        for i in range(300):
            store.commit(state.model_copy(update={"status": f"commit {i}"}), "c1", announce=False)
    finally:
        stop.set()
        renewer.join(5)
    assert store.load().status == "commit 299"


def test_a_lost_lease_mid_step_is_left_to_the_successor_not_rolled_back(
    settings: RolloutSettings, store: RolloutStore, redis_client: redis.Redis
) -> None:
    clock, registry = Clock(), RecordingRegistry()
    deployer = ScriptedDeployer()
    controller = make_controller(settings, store, deployer, registry, clock, owner="c1")
    lease = f"vroom:rollout:{settings.model_name}:lease"

    def deploy_and_lose_the_lease(version: str) -> None:
        deployer.calls.append(("deploy_candidate", version))
        redis_client.set(lease, "c2")  # c1 paused past its lease; c2 took over

    deployer.deploy_candidate = deploy_and_lose_the_lease  # type: ignore[method-assign]
    send(store, "start", version="2")
    with pytest.raises(LeaseLost):
        controller.tick()
    stored = store.load()
    assert stored.state == "starting"  # not rolled back: c2 resumes from here
    assert not stored.deployed
    assert registry.tags == {}


def test_requests_wait_for_the_controller_and_say_when_none_runs(
    settings: RolloutSettings, store: RolloutStore
) -> None:
    with pytest.raises(DependencyUnavailable, match="no controller holds the rollout lease"):
        request(
            settings,
            RolloutRequested(model_name=settings.model_name, action="abort", requested_by="t"),
            timeout_s=0.3,
        )
    registry, stop = RecordingRegistry(), threading.Event()
    controller = Controller(settings, store, ScriptedDeployer(), registry)  # type: ignore[arg-type]
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        started = request(
            settings,
            RolloutRequested(
                model_name=settings.model_name, action="start", version="2", requested_by="t"
            ),
        )
        assert started.candidate_version == "2"
        assert started.state in ("starting", "shadow")
        with pytest.raises(Conflict, match=r"a rollout of v2 is (starting|shadow)"):
            request(
                settings,
                RolloutRequested(
                    model_name=settings.model_name, action="start", version="1", requested_by="t"
                ),
            )
    finally:
        stop.set()
        thread.join(5)
    assert store.leader() is None  # released on a clean stop
