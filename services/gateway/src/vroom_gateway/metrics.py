"""The gateway's own metric next to the shared HTTP ones: the model version served."""

from __future__ import annotations

from vroom_common.observability import HttpMetrics


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
