"""The gateway's own metrics next to the shared HTTP ones: the model version served, and
where a prediction's time goes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prometheus_client.metrics import Histogram

from vroom_common.observability import HttpMetrics

#: The stages of a prediction, in order: the request read, parsed and validated (up
#: to the route's first line), the feature service's answer, the predictor's answer
#: (rollout routing included), the response body built.
STAGES: Final = ("parse", "features", "inference", "serialize")
#: The histogram of :class:`Stages`.
STAGE_METRIC: Final = "vroom_gateway_stage_seconds"


class ServedVersion:
    """``vroom_model_version_served{model_name, version}``: 1 for the version the
    predictor last answered with (read from inference responses), 0 for the versions
    it answered with before. (Series are zeroed, not removed: Feast switches
    prometheus_client to multiprocess mode, where removal is not supported.)"""

    def __init__(self, metrics: HttpMetrics, model_name: str) -> None:
        self._gauge = metrics.gauge(
            "vroom_model_version_served",
            "1 for the model version the predictor last answered with.",
            ["model_name", "version"],
        )
        self._model_name = model_name
        self._last: str | None = None

    def record(self, version: str) -> None:
        if version == self._last:
            return
        if self._last is not None:
            self._gauge.labels(self._model_name, self._last).set(0)
        self._gauge.labels(self._model_name, version).set(1)
        self._last = version


class Stages:
    """``vroom_gateway_stage_seconds{route, stage}``: each prediction's time per stage of
    ``STAGES`` (``vroom bench`` prints their means beside the end-to-end latency)."""

    def __init__(self, metrics: HttpMetrics) -> None:
        self._histogram = metrics.histogram(
            STAGE_METRIC,
            "Time of each stage of a prediction: parse, features, inference, serialize.",
            ["route", "stage"],
        )
        self._children: dict[tuple[str, str], Histogram] = {}

    def observe(self, route: str, times: Sequence[float]) -> None:
        """``times``: when the request arrived, then when each stage of ``STAGES`` ended."""
        for stage, start, end in zip(STAGES, times, times[1:], strict=False):
            child = self._children.get((route, stage))
            if child is None:
                child = self._children[route, stage] = self._histogram.labels(route, stage)
            child.observe(end - start)
