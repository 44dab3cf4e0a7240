"""Live signals per model version: counts and log-bucketed histograms that add up.

Every gateway replica counts what it sees (requests, errors, latency of the inference
hop, |candidate - champion| on mirrored requests) in memory and adds the counts to one
Redis hash per rollout step every fraction of a second (``HINCRBY``). Counts of
fixed buckets add across replicas and restarts, so the controller reads one hash and
gets percentiles of all traffic; a bucket is 8 % wide, which bounds the error of a
percentile at 4 %.

Hash fields: ``<version>|n`` requests, ``<version>|err`` failed requests,
``<version>|lat|<bucket>`` latency, ``<version>|cmp`` compared requests,
``<version>|dis|<bucket>`` disagreement.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel

from vroom_common.events import text


@dataclass(frozen=True)
class LogBuckets:
    """Buckets ``[start * factor**(i-1), start * factor**i)`` for i >= 1; 0 holds values
    below ``start``; the last one holds everything above the range."""

    start: float
    factor: float
    count: int

    def index(self, value: float) -> int:
        if not value >= self.start:  # also NaN
            return 0
        return min(self.count, 1 + int(math.log(value / self.start) / math.log(self.factor)))

    def value(self, index: int) -> float:
        """A bucket's representative: its geometric middle (0 for the bottom bucket)."""
        if index <= 0:
            return 0.0
        return float(self.start * self.factor ** (index - 0.5))

    def quantile(self, counts: Mapping[int, int], q: float) -> float | None:
        total = sum(counts.values())
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index in sorted(counts):
            seen += counts[index]
            if seen >= rank:
                return self.value(index)
        return self.value(max(counts))


#: Latency of the inference hop, 0.05 ms to about 5 s.
LATENCY_MS: Final = LogBuckets(start=0.05, factor=1.08, count=150)
#: |candidate - champion| in reservations, 0.001 to about 100.
DISAGREEMENT: Final = LogBuckets(start=0.001, factor=1.08, count=150)

_SEP: Final = "|"


class VersionSignals(BaseModel):
    """One model version's signals in one step (the API's ``signals.<version>``)."""

    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    compared: int = 0
    """Mirrored requests whose candidate answer was compared with the champion's."""
    disagreement_median: float | None = None
    disagreement_p90: float | None = None


class SignalBatch:
    """Counts gathered since the last flush, by Redis hash key then field."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def observe(self, key: str, version: str, latency_ms: float, *, ok: bool) -> None:
        fields = self.counts[key]
        fields[f"{version}{_SEP}n"] += 1
        # Failed calls count in the latency too: a call cut off at its deadline took at
        # least the deadline, and a p99 of the successes alone would hide it.
        fields[f"{version}{_SEP}lat{_SEP}{LATENCY_MS.index(latency_ms)}"] += 1
        if not ok:
            fields[f"{version}{_SEP}err"] += 1

    def compare(self, key: str, version: str, disagreement: float) -> None:
        fields = self.counts[key]
        fields[f"{version}{_SEP}cmp"] += 1
        fields[f"{version}{_SEP}dis{_SEP}{DISAGREEMENT.index(disagreement)}"] += 1

    def drain(self) -> dict[str, Counter[str]]:
        counts, self.counts = dict(self.counts), defaultdict(Counter)
        return counts

    def __bool__(self) -> bool:
        return bool(self.counts)


def summarize(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, VersionSignals]:
    """The signals per version from one step's hash (``HGETALL``)."""
    requests: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    compared: Counter[str] = Counter()
    latency: defaultdict[str, Counter[int]] = defaultdict(Counter)
    disagreement: defaultdict[str, Counter[int]] = defaultdict(Counter)
    for raw_field, raw_value in fields.items():
        parts = text(raw_field).split(_SEP)
        count = int(text(raw_value))
        version, kind = parts[0], parts[1] if len(parts) > 1 else ""
        if kind == "n":
            requests[version] += count
        elif kind == "err":
            errors[version] += count
        elif kind == "cmp":
            compared[version] += count
        elif kind == "lat" and len(parts) == 3:
            latency[version][int(parts[2])] += count
        elif kind == "dis" and len(parts) == 3:
            disagreement[version][int(parts[2])] += count
    versions = set(requests) | set(compared)
    return {
        version: VersionSignals(
            requests=requests[version],
            errors=errors[version],
            error_rate=errors[version] / requests[version] if requests[version] else 0.0,
            p50_ms=_round(LATENCY_MS.quantile(latency[version], 0.50)),
            p99_ms=_round(LATENCY_MS.quantile(latency[version], 0.99)),
            compared=compared[version],
            disagreement_median=_round(DISAGREEMENT.quantile(disagreement[version], 0.50)),
            disagreement_p90=_round(DISAGREEMENT.quantile(disagreement[version], 0.90)),
        )
        for version in sorted(versions)
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
