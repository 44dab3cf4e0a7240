"""The gateway's split and mirror in a canary step, with stand-in predictors (the whole
path on real servers is tests/e2e/test_rollouts.py): the signals it leaves are what the
controller judges."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest

from vroom_common.errors import DependencyUnavailable
from vroom_common.observability import HttpMetrics
from vroom_gateway.clients.predictor import Prediction
from vroom_gateway.metrics import ServedVersion
from vroom_gateway.settings import GatewaySettings
from vroom_gateway.traffic import Traffic, share_bucket
from vroom_rollout.progressive.machine import RolloutState
from vroom_rollout.progressive.signals import VersionSignals, summarize
from vroom_rollout.progressive.store import signals_key

ROLLOUT = "r1"
FEATURES = np.zeros((1, 7), dtype=np.float32)


@dataclass
class StandIn:
    """Answers ``value`` as ``version``; fails when told to; counts its calls."""

    version: str
    value: float
    fail: bool = False
    calls: list[int] = field(default_factory=list)

    async def predict(self, features: np.ndarray) -> Prediction:
        self.calls.append(len(features))
        if self.fail:
            raise DependencyUnavailable("predictor", "stand-in told to fail")
        return Prediction([self.value] * len(features), self.version, "run")


def key_in(bucket: range) -> bytes:
    """A request key whose share bucket falls in ``bucket``."""
    return next(
        key
        for i in range(10_000)
        if share_bucket(ROLLOUT, key := f"request-{i}".encode()) in bucket
    )


def traffic(champion: StandIn, candidate: StandIn) -> Traffic:
    settings = GatewaySettings(model_name="m")
    metrics = HttpMetrics("gateway")
    routed = Traffic(
        settings,
        champion=champion,  # type: ignore[arg-type]
        candidate=candidate,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]  # never started: no Redis needed
        metrics=metrics,
        served_version=ServedVersion(metrics, "m"),
    )
    routed.state = RolloutState(
        model_name="m",
        id=ROLLOUT,
        state="canary",
        champion_version="1",
        candidate_version="2",
        weight=10,
        step=0,
    )
    return routed


async def serve(routed: Traffic, key: bytes, n: int) -> list[str]:
    versions = []
    for _ in range(n):
        versions.append((await routed.predict(FEATURES, key)).model_version)
    await asyncio.gather(*routed._mirrors)
    return versions


def signals_of(routed: Traffic) -> dict[str, VersionSignals]:
    key = signals_key("m", ROLLOUT, routed.state.step_name)
    counts = routed.batch.drain()[key]
    return summarize({name: str(count) for name, count in counts.items()})


@pytest.mark.parametrize(("bucket", "answering"), [(range(0, 10), "2"), (range(10, 100), "1")])
def test_every_canary_request_is_compared_whichever_model_answers(
    bucket: range, answering: str
) -> None:
    """Even when all of a step's traffic lands on one side (one repeated request), both
    answers of every request are compared: a step never waits for comparisons that
    cannot come."""
    champion, candidate = StandIn("1", 10.0), StandIn("2", 12.5)
    routed = traffic(champion, candidate)

    versions = asyncio.run(serve(routed, key_in(bucket), 20))

    assert set(versions) == {answering}  # the same request keeps its version
    assert len(champion.calls) == len(candidate.calls) == 20  # answered or mirrored
    signals = signals_of(routed)
    assert signals["2"].compared == 20
    assert signals["2"].disagreement_median == pytest.approx(2.5, abs=0.3)
    assert signals["2"].requests == 20
    assert signals["1"].requests == 20


def test_a_failing_candidate_is_answered_by_the_champion_and_counted() -> None:
    champion, candidate = StandIn("1", 10.0), StandIn("2", 0.0, fail=True)
    routed = traffic(champion, candidate)

    versions = asyncio.run(serve(routed, key_in(range(0, 10)), 10))

    assert versions == ["1"] * 10
    signals = signals_of(routed)
    assert signals["2"].errors == 10
    assert signals["2"].compared == 0
