"""Liveness without a server: a heartbeat file the loop rewrites, and a probe that reads it.

The materializer has no HTTP port, so Kubernetes (an exec probe) and the local stack
run ``python -m vroom_materializer --probe``: exit 0 when the heartbeat is fresh,
1 with the reason otherwise. This module imports nothing heavy, so the probe is quick.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog

log = structlog.get_logger(__name__)

#: What the materializer is doing, as the heartbeat says.
Phase = Literal["starting", "recovering", "reconciling", "running", "waiting", "stopped"]

#: Name of the heartbeat file in ``<state_dir>/materializer/``.
HEARTBEAT_FILE: Final = "heartbeat"


def heartbeat_path(state_dir: Path) -> Path:
    """Where the materializer of this state directory writes its heartbeat."""
    return state_dir / "materializer" / HEARTBEAT_FILE


class Heartbeat:
    """Writes ``{at, phase, consumer, pid, detail, <counters>}`` atomically (rename).

    Writes of an unchanged phase are throttled to one per ``min_interval_s``, so the
    loop can beat on every iteration without a file write per entry.
    """

    def __init__(self, path: Path, consumer: str, min_interval_s: float = 1.0) -> None:
        self.path = path
        self.consumer = consumer
        self.min_interval_s = min_interval_s
        self._last_phase: str | None = None
        self._last_write = 0.0
        self._failed = False

    def beat(
        self, phase: Phase, detail: str = "", counters: Mapping[str, int] | None = None
    ) -> None:
        now = time.monotonic()
        if phase == self._last_phase and now - self._last_write < self.min_interval_s:
            return
        record: dict[str, Any] = {
            "at": time.time(),
            "phase": phase,
            "consumer": self.consumer,
            "pid": os.getpid(),
            "detail": detail,
            **(counters or {}),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(self.path)
        except OSError as exc:
            if not self._failed:  # once: a read-only volume would otherwise flood the log
                log.error("cannot write the heartbeat", path=str(self.path), error=str(exc))
            self._failed = True
            return
        self._failed = False
        self._last_phase, self._last_write = phase, now


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    reason: str


def probe(path: Path, max_age_s: float, now: float | None = None) -> ProbeResult:
    """Healthy when the heartbeat exists, parses, is not ``stopped`` and is fresh."""
    try:
        record = json.loads(path.read_text())
        at, phase = float(record["at"]), str(record["phase"])
    except FileNotFoundError:
        return ProbeResult(False, f"no heartbeat at {path}: the materializer is not running")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ProbeResult(False, f"unreadable heartbeat at {path}: {exc}")
    age = (time.time() if now is None else now) - at
    detail = f" ({record['detail']})" if record.get("detail") else ""
    if phase == "stopped":
        return ProbeResult(False, f"the materializer stopped {age:.0f}s ago")
    if age > max_age_s:
        return ProbeResult(
            False, f"heartbeat is {age:.0f}s old (limit {max_age_s:g}s); last phase {phase}{detail}"
        )
    return ProbeResult(True, f"ok: {phase}{detail}, heartbeat {age:.1f}s old")
