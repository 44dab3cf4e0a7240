"""Reconciliation: vehicles whose event never reached Redis still get their features."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import free_ports
from tests.materializer.conftest import (
    Fleet,
    MakeMaterializer,
    make_fleet,
    random_vehicle,
    wait_for,
)
from vroom_cli.stack.services import find_redis_server
from vroom_common.events import MATERIALIZER_GROUP, Stream
from vroom_common.settings import Settings
from vroom_db.queries import raw_vehicles
from vroom_db.vehicles import insert_vehicle, publish_vehicle_saved

pytestmark = pytest.mark.integration


def test_a_vehicle_saved_while_redis_was_down_is_reconciled_at_start(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    dead = redis.Redis(port=free_ports(1)[0], socket_connect_timeout=1)
    vehicle_id = insert_vehicle(fleet.sessions, random_vehicle(random.Random(1)))
    assert not publish_vehicle_saved(dead, vehicle_id)
    with fleet.sessions() as session:  # saved all the same
        assert [row["vehicle_id"] for row in raw_vehicles(session, [vehicle_id])] == [vehicle_id]
    assert fleet.client.exists(Stream.VEHICLES) == 0  # no event was ever written

    materializer = make_materializer(fleet.settings)
    materializer.start().wait_running()

    assert fleet.online([vehicle_id]) == {vehicle_id}
    assert fleet.notified() == {vehicle_id: 1}
    reconciled = [r for r in materializer.log_records() if r.get("event") == "reconciled"]
    assert reconciled[-1]["missing"] == 1
    assert reconciled[-1]["written"] == 1


class PrivateRedis:
    """A redis-server of this test only, without persistence: a restart comes back empty."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), 10, "the private redis-server")
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_ports(1)[0], tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def outage_fleet(isolated_settings: Settings, private_redis: PrivateRedis) -> Iterator[Fleet]:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    settings = isolated_settings.with_overrides(redis_port=private_redis.port, redis_url=url)
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    yield from make_fleet(settings, client)
    client.close()


def test_a_redis_outage_while_running_is_waited_out_and_reconciled(
    outage_fleet: Fleet, private_redis: PrivateRedis, make_materializer: MakeMaterializer
) -> None:
    fleet = outage_fleet
    materializer = make_materializer(fleet.settings, max_backoff_s=0.5)
    materializer.start().wait_running()
    before = fleet.save(1)
    fleet.wait_notified(before, timeout=60)

    private_redis.stop()
    during = []
    for _ in range(3):
        vehicle_id = insert_vehicle(fleet.sessions, random_vehicle(fleet.rng))
        assert not publish_vehicle_saved(fleet.client, vehicle_id)
        during.append(vehicle_id)
    wait_for(lambda: materializer.heartbeat().get("phase") == "waiting", 30, "a waiting heartbeat")
    probe = materializer.probe()
    assert probe.returncode == 0, probe.stdout  # alive: waiting out the outage
    assert "waiting" in probe.stdout

    # Redis comes back empty (no persistence): no stream, no group, no online rows.
    private_redis.start()
    everything = [*fleet.fleet_ids, *before, *during]
    wait_for(lambda: fleet.online(everything) == set(everything), 120, "the store to be rebuilt")
    assert set(during) <= set(fleet.notified())
    groups = fleet.client.xinfo_groups(Stream.VEHICLES)
    assert [g["name"].decode() for g in groups] == [MATERIALIZER_GROUP]  # recreated
    assert fleet.pending() == 0
    assert materializer.proc is not None
    assert materializer.proc.poll() is None  # it waited the outage out
    assert materializer.terminate() == 0
