"""Live drift: a window of the rows each model answered, scored against the training
reference saved with the model (vroom_features.drift), as Prometheus gauges and JSON.

The hot path only copies the request's rows into a ring buffer; the scores are computed
when asked (a scrape, ``GET /v2/monitoring``): a few milliseconds for the whole window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vroom_features import FEATURE_NAMES
from vroom_features.drift import MONITORING_PATH, PREDICTION, Reference, psi

#: Live rows kept per served model (its drift window) by default.
DRIFT_WINDOW_ROWS = 5000
#: Rows the window needs before it is scored: fewer give noisy PSI values.
DRIFT_MIN_ROWS = 200


class DriftWindow:
    """The last ``size`` rows (``[size, N_FEATURES]``) and their predictions. Safe to
    feed from the event loop and worker threads at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows = np.zeros((size, len(FEATURE_NAMES)), dtype=np.float32)
        self._predictions = np.zeros(size, dtype=np.float32)
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()

    def observe(self, rows: npt.NDArray[np.float32], predictions: npt.NDArray[np.float32]) -> None:
        n = len(predictions)
        if n == 0:
            return
        if n >= self.size:  # a batch larger than the window: its last rows are the window
            rows, predictions, n = rows[-self.size :], predictions[-self.size :], self.size
        with self._lock:
            start = self._next
            first = min(n, self.size - start)
            self._rows[start : start + first] = rows[:first, : self._rows.shape[1]]
            self._predictions[start : start + first] = predictions[:first]
            if first < n:
                self._rows[: n - first] = rows[first:, : self._rows.shape[1]]
                self._predictions[: n - first] = predictions[first:]
            self._next = (start + n) % self.size
            self._filled = min(self.size, self._filled + n)

    def snapshot(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Copies of the rows and predictions held (order does not matter to a histogram)."""
        with self._lock:
            return self._rows[: self._filled].copy(), self._predictions[: self._filled].copy()

    @property
    def rows(self) -> int:
        return self._filled


@dataclass(frozen=True)
class DriftReport:
    """One served model's drift: ``scores`` is None until the window holds ``min_rows``."""

    model: str
    version: str
    window_rows: int
    min_rows: int
    reference_rows: int
    scores: dict[str, float] | None
    distributions: dict[str, dict[str, list[Any]]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "window_rows": self.window_rows,
            "min_rows": self.min_rows,
            "reference_rows": self.reference_rows,
            "psi": self.scores,
            "distributions": self.distributions,
        }


def report(
    model: str, version: str, reference: Reference, window: DriftWindow, min_rows: int
) -> DriftReport:
    """The window against the reference: PSI per feature and for the predictions, and
    both distributions bin by bin (what ``vroom monitor`` draws)."""
    rows, predictions = window.snapshot()
    columns = {name: rows[:, i] for i, name in enumerate(FEATURE_NAMES)}
    columns[PREDICTION] = predictions
    distributions: dict[str, dict[str, list[Any]]] = {}
    live_shares: dict[str, tuple[float, ...]] = {}
    for name, values in columns.items():
        if name != PREDICTION and name not in reference.features:
            continue
        bins = reference.bins(name)
        live_shares[name] = bins.shares_of(values)  # binned once: scores and chart
        distributions[name] = {
            "bins": bins.labels(),
            "train": list(bins.shares),
            "live": list(live_shares[name]) if len(values) else [],
        }
    scores = (
        {name: psi(reference.bins(name).shares, live) for name, live in live_shares.items()}
        if len(predictions) >= min_rows
        else None
    )
    return DriftReport(
        model, version, len(predictions), min_rows, reference.rows, scores, distributions
    )


class DriftCollector(Collector):
    """Prometheus gauges of the served models' drift, computed at scrape time."""

    def __init__(self, reports: Callable[[], Iterable[DriftReport]]) -> None:
        self._reports = reports

    def collect(self) -> Iterator[GaugeMetricFamily]:
        psi = GaugeMetricFamily(
            "vroom_drift_psi",
            "Population stability index of the live window against the training "
            "distribution, per feature (and 'prediction'); absent until the window "
            "holds the minimum rows.",
            labels=["model", "version", "feature"],
        )
        rows = GaugeMetricFamily(
            "vroom_drift_window_rows",
            "Live rows in the drift window of a served model.",
            labels=["model", "version"],
        )
        for item in self._reports():
            rows.add_metric([item.model, item.version], item.window_rows)
            for feature, score in (item.scores or {}).items():
                psi.add_metric([item.model, item.version, feature], score)
        yield psi
        yield rows


class Monitored(Protocol):
    def drift(self) -> DriftReport | None: ...


def install_monitoring(app: FastAPI, models: Sequence[Monitored]) -> None:
    """``GET /v2/monitoring`` on the predictor's REST app (the served models' reports, the
    gateway's ``/monitoring`` reads it) and the drift gauges on its ``/metrics``."""

    def reports() -> list[DriftReport]:
        return [item for model in models if (item := model.drift()) is not None]

    async def monitoring() -> dict[str, Any]:
        return {"models": [item.as_dict() for item in reports()]}

    app.add_api_route(MONITORING_PATH, monitoring, methods=["GET"], include_in_schema=False)
    REGISTRY.register(DriftCollector(reports))
