"""The real process: ``python -m vroom_feature_service`` on a free port, with the
materialized state's settings in its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_ports
from tests.feature_service.conftest import Materialized

STARTUP_TIMEOUT_S = 60.0


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"feature service exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"feature service not ready within {STARTUP_TIMEOUT_S}s:\n{log.read_text()}")


def test_serves_as_a_process(
    materialized: Materialized, fleet: list[dict[str, Any]], tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    settings = materialized.settings.model_copy(update={"feature_service_port": port})
    log = tmp_path / "feature-service.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "vroom_feature_service"],
            env={**os.environ, **settings.as_env(), "VROOM_LOG_FORMAT": "json"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(base, process, log)
            vehicle_id = fleet[0]["vehicle_id"]

            response = httpx.post(
                f"{base}/v1/features/online", json={"vehicle_ids": [vehicle_id]}, timeout=10
            )

            assert response.status_code == 200, response.text
            assert [v["vehicle_id"] for v in response.json()["found"]] == [vehicle_id]
            process.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught
            assert process.wait(timeout=20) in (0, -signal.SIGTERM), log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.read_text()
    assert "feature service started" in text
    assert "Application shutdown complete" in text
