"""``python -m vroom_materializer --probe``: fresh heartbeat 0, stale/missing/stopped 1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.materializer.conftest import MaterializerProcess
from vroom_common.settings import Settings
from vroom_materializer.health import Heartbeat, heartbeat_path, probe


def _write(path: Path, **record: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"consumer": "m", "pid": 1, "detail": "", **record}))


def test_probe_reads_the_heartbeat(tmp_path: Path) -> None:
    path = heartbeat_path(tmp_path)
    assert not probe(path, 30).healthy
    assert "no heartbeat" in probe(path, 30).reason

    Heartbeat(path, "m").beat("running")
    assert probe(path, 30).healthy

    _write(path, at=time.time() - 100, phase="running")
    result = probe(path, 30)
    assert not result.healthy
    assert "100s old" in result.reason

    _write(path, at=time.time(), phase="waiting", detail="read: ConnectionError")
    result = probe(path, 30)
    assert result.healthy  # waiting out an outage is alive
    assert "ConnectionError" in result.reason

    _write(path, at=time.time(), phase="stopped")
    assert not probe(path, 30).healthy

    path.write_text("{not json")
    assert "unreadable" in probe(path, 30).reason


def test_heartbeat_writes_are_throttled_per_phase(tmp_path: Path) -> None:
    path = heartbeat_path(tmp_path)
    beat = Heartbeat(path, "m", min_interval_s=60)
    beat.beat("running", counters={"materialized": 1})
    beat.beat("running", counters={"materialized": 2})  # throttled
    assert json.loads(path.read_text())["materialized"] == 1
    beat.beat("stopped", counters={"materialized": 2})  # a new phase is written at once
    assert json.loads(path.read_text())["phase"] == "stopped"


@pytest.mark.parametrize(
    ("age", "expected"), [(None, 1), (0.0, 0), (100.0, 1)], ids=["missing", "fresh", "stale"]
)
def test_probe_command_exit_codes(tmp_path: Path, age: float | None, expected: int) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    if age is not None:
        _write(heartbeat_path(settings.state_dir), at=time.time() - age, phase="running")
    result = MaterializerProcess(settings, tmp_path).probe(max_age=30)
    assert result.returncode == expected, result.stdout + result.stderr
    assert result.stdout.strip()
