"""Liveness without a server: a heartbeat file the loop rewrites each tick, and a probe.

Kubernetes (an exec probe) and the local stack run ``python -m vroom_controller
--probe``. This module imports nothing heavy, so the probe is quick.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Final

#: A heartbeat older than this (seconds) means the loop is stuck.
DEFAULT_MAX_AGE_S: Final = 30.0


def heartbeat_path(state_dir: Path) -> Path:
    """Where the controller of this state directory writes its heartbeat."""
    return state_dir / "controller" / "heartbeat"


def beat(path: Path, leading: bool) -> None:
    """Rewrite the heartbeat atomically (a probe never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"at": time.time(), "pid": os.getpid(), "leading": leading}))
    partial.replace(path)


def probe(path: Path, max_age_s: float) -> tuple[bool, str]:
    try:
        record = json.loads(path.read_text())
        age = time.time() - float(record["at"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"no heartbeat at {path}: {exc}"
    role = "leading" if record.get("leading") else "standing by"
    if age > max_age_s:
        return False, f"heartbeat {age:.0f} s old (> {max_age_s:g} s): the loop is stuck"
    return True, f"alive, {role} (heartbeat {age:.1f} s old, pid {record.get('pid')})"
