"""A real materializer process (``python -m vroom_materializer``) against the session's
Redis and the Feast store of the test's own state directory, seeded with a small
synthetic fleet that batch materialization already wrote online."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from feast import FeatureStore
from sqlalchemy.orm import Session, sessionmaker

from vroom_common import events
from vroom_common.events import MATERIALIZER_GROUP, Stream, VehicleMaterialized, VehicleSaved
from vroom_common.schemas import VehicleFeatures
from vroom_common.settings import Settings
from vroom_db import make_engine, make_session_factory
from vroom_db.queries import vehicle_ids
from vroom_db.vehicles import insert_vehicle, publish_vehicle_saved
from vroom_features.online import read_online, split_found
from vroom_features.store import open_store
from vroom_materializer.health import heartbeat_path
from vroom_pipelines.materialize import materialize
from vroom_pipelines.seed import seed_synthetic

FLEET_SIZE = 30


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def random_vehicle(rng: random.Random) -> VehicleFeatures:
    recommended = rng.randint(35, 90)
    return VehicleFeatures(
        technology=rng.randint(0, 1),
        actual_price=round(recommended * rng.uniform(0.8, 2.0), 2),
        recommended_price=recommended,
        num_images=rng.randint(1, 5),
        street_parked=rng.randint(0, 1),
        description=rng.randint(1, 250),
    )


@dataclass
class Fleet:
    """A seeded, materialized state directory and handles on its stores."""

    settings: Settings
    client: redis.Redis
    store: FeatureStore
    sessions: sessionmaker[Session]
    fleet_ids: list[int]
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def save(self, n: int, maxlen: int | None = None) -> list[int]:
        """Save ``n`` new arrivals through the producer; every event is published."""
        ids = []
        for _ in range(n):
            vehicle_id = insert_vehicle(self.sessions, random_vehicle(self.rng))
            published = publish_vehicle_saved(
                self.client, vehicle_id, maxlen or self.settings.stream_maxlen
            )
            assert published
            ids.append(vehicle_id)
        return ids

    def online(self, ids: list[int]) -> set[int]:
        """Those of ``ids`` whose features are in the online store."""
        found, _missing = split_found(read_online(self.store, ids))
        return {int(i) for i in found.index}

    def online_features(self, vehicle_id: int) -> dict[str, float]:
        row = read_online(self.store, [vehicle_id]).loc[vehicle_id]
        return {name: float(value) for name, value in row.items()}

    def notified(self) -> Counter[int]:
        """How many ``vehicle-materialized`` notifications each vehicle got."""
        counts: Counter[int] = Counter()
        for _id, fields in self.client.xrange(Stream.VEHICLE_NOTIFICATIONS):
            event = events.decode(fields)
            assert isinstance(event, VehicleMaterialized)
            counts[event.vehicle_id] += 1
        return counts

    def wait_notified(self, ids: list[int], timeout: float = 120) -> None:
        wanted = set(ids)
        wait_for(
            lambda: wanted <= set(self.notified()),
            timeout,
            f"vehicle-materialized for {len(wanted)} vehicles",
        )

    def pending(self) -> int:
        try:
            return int(self.client.xpending(Stream.VEHICLES, MATERIALIZER_GROUP)["pending"])
        except redis.ResponseError:  # no stream or group yet
            return 0

    def acked_saved_ids(self) -> set[int]:
        """Vehicles of entries delivered to the group and acknowledged."""
        groups = {g["name"].decode(): g for g in self.client.xinfo_groups(Stream.VEHICLES)}
        last = _id_key(groups[MATERIALIZER_GROUP]["last-delivered-id"])
        pending = {
            item["message_id"]
            for item in self.client.xpending_range(
                Stream.VEHICLES, MATERIALIZER_GROUP, "-", "+", 100_000
            )
        }
        acked = set()
        for entry_id, fields in self.client.xrange(Stream.VEHICLES):
            if _id_key(entry_id) <= last and entry_id not in pending:
                event = events.decode(fields)
                assert isinstance(event, VehicleSaved)
                acked.add(event.vehicle_id)
        return acked


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def make_fleet(settings: Settings, client: redis.Redis) -> Iterator[Fleet]:
    seed_synthetic(settings, FLEET_SIZE)
    materialize(settings)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        fleet_ids = vehicle_ids(session)
    assert len(fleet_ids) == FLEET_SIZE
    fleet = Fleet(settings, client, open_store(settings), sessions, fleet_ids)
    assert fleet.online(fleet_ids) == set(fleet_ids)
    yield fleet
    engine.dispose()


@pytest.fixture
def fleet(isolated_settings: Settings, redis_client: redis.Redis) -> Iterator[Fleet]:
    """A synthetic fleet in the database and the online store, on an empty Redis."""
    yield from make_fleet(isolated_settings, redis_client)


class MaterializerProcess:
    """``python -m vroom_materializer`` as a child process, its log in a file."""

    def __init__(
        self, settings: Settings, log_dir: Path, consumer: str = "m-test", **options: Any
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.options = options
        self.log_dir = log_dir
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / "materializer-0.log"

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.settings.as_env(), "VROOM_LOG_FORMAT": "json"}
        env.update({f"VROOM_MATERIALIZER_{k.upper()}": str(v) for k, v in self.options.items()})
        return env

    def start(self) -> MaterializerProcess:
        self.runs += 1
        self.log_path = self.log_dir / f"materializer-{self.consumer}-{self.runs}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vroom_materializer", "--consumer", self.consumer],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def heartbeat(self) -> dict[str, Any]:
        try:
            return dict(json.loads(heartbeat_path(self.settings.state_dir).read_text()))
        except (OSError, ValueError):
            return {}

    def wait_running(self, timeout: float = 180) -> MaterializerProcess:
        assert self.proc is not None

        def running() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"materializer exited ({self.proc.returncode}):\n{self.log_tail()}")
            beat = self.heartbeat()
            return beat.get("phase") == "running" and beat.get("pid") == self.proc.pid

        wait_for(running, timeout, "the materializer to run")
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"materializer ignored SIGTERM for {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def probe(self, max_age: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vroom_materializer", "--probe", "--max-age", str(max_age)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


MakeMaterializer = Callable[..., MaterializerProcess]


@pytest.fixture
def make_materializer(tmp_path: Path) -> Iterator[MakeMaterializer]:
    """``make_materializer(settings, consumer=..., **options)``; killed at teardown."""
    made: list[MaterializerProcess] = []

    def make(settings: Settings, consumer: str = "m-test", **options: Any) -> MaterializerProcess:
        process = MaterializerProcess(settings, tmp_path, consumer, **options)
        made.append(process)
        return process

    yield make
    for process in made:
        process.stop_quietly()
