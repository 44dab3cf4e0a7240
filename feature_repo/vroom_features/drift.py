"""Drift of live inputs from what a model was trained on: the reference saved with the
model, and the score that compares a window of live rows with it.

The score is the population stability index (PSI) over the reference's bins:
``sum((live - train) * ln(live / train))`` over the bins' shares, each share floored at
``EPSILON`` so an empty bin counts as rare rather than infinite. Bins are the training
deciles of a continuous feature (fewer when values repeat) and the values themselves of
a feature with at most ``MAX_CATEGORIES`` distinct ones (``technology``,
``street_parked``); the prediction is scored the same way. Read it as the usual rule of
thumb has it: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a shift to act
on (``DRIFT_ALERT_PSI``, the chart's alert threshold by default).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from vroom_features.transforms import FEATURE_NAMES

#: File of the training distributions inside a logged model's directory.
REFERENCE_FILE: Final = "drift_reference.json"
#: The predictor's REST path of its served models' drift reports (the gateway's
#: ``GET /monitoring`` reads it).
MONITORING_PATH: Final = "/v2/monitoring"
#: The name the prediction's own distribution is scored under, beside the features'.
PREDICTION: Final = "prediction"
#: Quantile bins of a continuous feature (deciles).
N_BINS: Final = 10
#: A feature with at most this many distinct training values is binned by value.
MAX_CATEGORIES: Final = 10
#: Floor of a bin's share: an empty bin is rare, not impossible.
EPSILON: Final = 1e-4
#: The conventional "significant shift" threshold.
DRIFT_ALERT_PSI: Final = 0.25


@dataclass(frozen=True)
class Bins:
    """One distribution's bins and its training shares.

    ``categories`` (values, for a discrete feature: a bin each, then one for values
    the training data never had) or ``edges`` (the inner cut points of a continuous
    one: ``len(edges) + 1`` bins, the outer ones open-ended) is set.
    """

    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[float, ...] = ()

    @classmethod
    def fit(cls, values: npt.ArrayLike) -> Bins:
        data = _finite(values)
        if data.size == 0:
            raise ValueError("no finite values to build a reference from")
        distinct = np.unique(data)
        if distinct.size <= MAX_CATEGORIES:
            bins = cls(shares=(), categories=tuple(float(v) for v in distinct))
        else:
            cuts = np.quantile(data, np.linspace(0, 1, N_BINS + 1)[1:-1])
            bins = cls(shares=(), edges=tuple(float(v) for v in np.unique(cuts)))
        return cls(bins.shares_of(data), bins.edges, bins.categories)

    def counts(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """How many of ``values`` fall in each bin."""
        data = _finite(values)
        if self.categories:
            known = np.asarray(self.categories)
            index = np.clip(np.searchsorted(known, data), 0, known.size - 1)
            index[known[index] != data] = known.size  # the "other" bin
            return np.bincount(index, minlength=known.size + 1).astype(np.int64)
        index = np.searchsorted(np.asarray(self.edges), data, side="right")
        return np.bincount(index, minlength=len(self.edges) + 1).astype(np.int64)

    def shares_of(self, values: npt.ArrayLike) -> tuple[float, ...]:
        counts = self.counts(values)
        total = max(int(counts.sum()), 1)
        return tuple(float(c) / total for c in counts)

    def psi(self, values: npt.ArrayLike) -> float:
        """The PSI of ``values`` against the training shares."""
        return psi(self.shares, self.shares_of(values))

    def labels(self) -> list[str]:
        """A readable name per bin (``<= 3``, ``3..7``, ``> 7``, or the value)."""
        if self.categories:
            return [*(f"{value:g}" for value in self.categories), "other"]
        edges = self.edges
        if not edges:
            return ["all"]
        inner = [f"{a:g}..{b:g}" for a, b in itertools.pairwise(edges)]
        return [f"< {edges[0]:g}", *inner, f">= {edges[-1]:g}"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "shares": list(self.shares),
            "edges": list(self.edges),
            "categories": list(self.categories),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bins:
        bins = cls(
            shares=tuple(float(v) for v in data["shares"]),
            edges=tuple(float(v) for v in data.get("edges", ())),
            categories=tuple(float(v) for v in data.get("categories", ())),
        )
        expected = len(bins.categories) + 1 if bins.categories else len(bins.edges) + 1
        if len(bins.shares) != expected:
            raise ValueError(f"{len(bins.shares)} shares for {expected} bins")
        return bins


def psi(
    expected: tuple[float, ...] | list[float], actual: tuple[float, ...] | list[float]
) -> float:
    """Population stability index of two share vectors over the same bins."""
    train = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    live = np.maximum(np.asarray(actual, dtype=np.float64), EPSILON)
    return float(np.sum((live - train) * np.log(live / train)))


@dataclass(frozen=True)
class Reference:
    """The training distribution of each served feature and of the predictions."""

    features: dict[str, Bins]
    prediction: Bins
    rows: int

    @classmethod
    def fit(cls, matrix: npt.ArrayLike, predictions: npt.ArrayLike) -> Reference:
        """From the training matrix (columns in ``FEATURE_NAMES`` order) and the model's
        predictions on it."""
        data = np.asarray(matrix, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected [N, {len(FEATURE_NAMES)}] features, got {data.shape}")
        features = {name: Bins.fit(data[:, i]) for i, name in enumerate(FEATURE_NAMES)}
        return cls(features, Bins.fit(predictions), int(data.shape[0]))

    def scores(
        self, matrix: npt.NDArray[np.float32], predictions: npt.NDArray[np.float32]
    ) -> dict[str, float]:
        """PSI of each feature (columns in ``FEATURE_NAMES`` order) and of the predictions."""
        scores = {
            name: bins.psi(matrix[:, i])
            for i, name in enumerate(FEATURE_NAMES)
            if (bins := self.features.get(name)) is not None
        }
        scores[PREDICTION] = self.prediction.psi(predictions)
        return scores

    def bins(self, name: str) -> Bins:
        return self.prediction if name == PREDICTION else self.features[name]

    def save(self, path: Path) -> None:
        body = {
            "rows": self.rows,
            "features": {name: bins.as_dict() for name, bins in self.features.items()},
            PREDICTION: self.prediction.as_dict(),
        }
        path.write_text(json.dumps(body, indent=2))

    @classmethod
    def load(cls, path: Path) -> Reference:
        """The reference in ``path``.

        Raises:
            ValueError: The file is not a reference (a model directory may be foreign).
        """
        try:
            body = json.loads(path.read_text())
            return cls(
                {name: Bins.from_dict(b) for name, b in body["features"].items()},
                Bins.from_dict(body[PREDICTION]),
                int(body["rows"]),
            )
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a drift reference: {exc}") from exc


def _finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    return data[np.isfinite(data)]
