"""Two gateway processes on one PostgreSQL, under concurrent saves and deletes: no
vehicle is lost, duplicated or corrupted, and each deletion happens exactly once.

Real processes (``python -m vroom_gateway``) on a real PostgreSQL, with the real
feature service (a deletion removes the vehicle's online features in the same step).
Both gateways start together on an empty database, so they also race to migrate it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import start_stack
from tests.feature_service.conftest import random_vehicles
from tests.ports import free_ports
from tests.postgres import PostgresServer
from vroom_cli.stack import down
from vroom_common.settings import Settings
from vroom_db import one_off_session
from vroom_db.migrate import current_revision, head_revision
from vroom_db.queries import vehicles_with_label
from vroom_db.session import make_engine
from vroom_pipelines.materialize import materialize
from vroom_pipelines.seed import seed_synthetic

pytestmark = pytest.mark.integration

#: A Redis database of this module's own.
REDIS_DB = 11
FLEET_SIZE = 30
CLIENTS = 6
SAVES_PER_CLIENT = 30


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gateway exited: {log.read_text()[-3000:]}"
        try:
            httpx.get(f"{url}/health", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    pytest.fail(f"gateway at {url} did not answer: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def gateways(
    postgres: PostgresServer, stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, list[str]]]:
    root = tmp_path_factory.mktemp("two-gateways")
    host, port = stack_settings.redis_host_port
    (feature_port,) = free_ports(1)
    with postgres.database() as database_url:
        settings = stack_settings.with_overrides(
            state_dir=root / "state",
            database_url=database_url,
            redis_url=f"redis://{host}:{port}/{REDIS_DB}",
            feature_service_port=feature_port,
        )
        redis.Redis.from_url(settings.redis_url).flushdb()
        ports = free_ports(2)
        processes: list[subprocess.Popen[bytes]] = []
        urls = [f"http://127.0.0.1:{gateway_port}" for gateway_port in ports]
        logs = [root / f"gateway-{i}.log" for i in range(2)]
        try:
            for gateway_port, log in zip(ports, logs, strict=True):
                env = {**os.environ, **settings.as_env(), "VROOM_PORT": str(gateway_port)}
                with log.open("wb") as out:
                    processes.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "vroom_gateway"],
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            for url, process, log in zip(urls, processes, logs, strict=True):
                _wait_until_serving(url, process, log)
            seed_synthetic(settings, FLEET_SIZE)
            materialize(settings)
            start_stack(settings, ("features",))
            yield settings, urls
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
            down(settings)


def test_concurrent_saves_and_deletes_on_two_gateways_lose_nothing(
    gateways: tuple[Settings, list[str]],
) -> None:
    settings, urls = gateways
    engine = make_engine(settings.database_url)
    try:
        assert current_revision(engine) == head_revision()  # migrated once, by the race
    finally:
        engine.dispose()

    def work(client_no: int) -> tuple[dict[int, dict[str, Any]], set[int], list[str]]:
        rng = random.Random(client_no)
        bodies = random_vehicles(SAVES_PER_CLIENT, seed=client_no)
        kept: dict[int, dict[str, Any]] = {}
        deleted: set[int] = set()
        failures: list[str] = []
        with httpx.Client(timeout=30) as client:
            for i, body in enumerate(bodies):
                saved = client.post(f"{urls[(client_no + i) % 2]}/vehicles", json=body)
                if saved.status_code != 200:
                    failures.append(f"save {saved.status_code} {saved.text}")
                    continue
                vehicle_id = saved.json()["vehicle_id"]
                if rng.random() < 0.5:  # deleted through the other gateway
                    gone = client.delete(f"{urls[(client_no + i + 1) % 2]}/vehicles/{vehicle_id}")
                    if gone.status_code != 200:
                        failures.append(f"delete {gone.status_code} {gone.text}")
                    deleted.add(vehicle_id)
                else:
                    kept[vehicle_id] = body
        return kept, deleted, failures

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(work, range(CLIENTS)))

    failures = [failure for _, _, found in results for failure in found]
    assert failures == []
    kept = {vehicle_id: body for found, _, _ in results for vehicle_id, body in found.items()}
    deleted = {vehicle_id for _, found, _ in results for vehicle_id in found}
    assert len(kept) + len(deleted) == CLIENTS * SAVES_PER_CLIENT  # every id distinct
    assert not kept.keys() & deleted

    with one_off_session(settings.database_url) as session:
        stored = {row["vehicle_id"]: row for row in vehicles_with_label(session)}
    arrivals = {vid: row for vid, row in stored.items() if row["source"] == "ui"}
    assert arrivals.keys() == kept.keys()  # none lost, none left behind, none doubled
    for vehicle_id, body in kept.items():  # none corrupted
        assert {name: arrivals[vehicle_id][name] for name in body} == body
    assert sum(row["source"] == "csv" for row in stored.values()) == FLEET_SIZE
    for url in urls:  # both gateways see the same fleet
        listed = httpx.get(f"{url}/vehicles", timeout=30).json()
        assert {row["vehicle_id"] for row in listed} == stored.keys()


def test_a_vehicle_deleted_through_both_gateways_at_once_is_deleted_once(
    gateways: tuple[Settings, list[str]],
) -> None:
    _settings, urls = gateways
    with httpx.Client(timeout=30) as client:
        ids = [
            client.post(f"{urls[0]}/vehicles", json=body).json()["vehicle_id"]
            for body in random_vehicles(20, seed=99)
        ]

    def delete(target: tuple[str, int]) -> int:
        url, vehicle_id = target
        return httpx.delete(f"{url}/vehicles/{vehicle_id}", timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        targets = [(url, vehicle_id) for vehicle_id in ids for url in urls]
        codes = list(pool.map(delete, targets))
    for index in range(len(ids)):
        assert sorted(codes[2 * index : 2 * index + 2]) == [200, 404]
