"""Durable delivery: a backlog, a kill, a graceful stop, a dead consumer, a replay."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from tests.materializer.conftest import Fleet, MakeMaterializer, wait_for
from vroom_common import events
from vroom_common.events import MATERIALIZER_GROUP, Stream, VehicleSaved
from vroom_common.settings import Settings

pytestmark = pytest.mark.integration


def _record(records: list[dict[str, object]], event: str) -> dict[str, object]:
    found = [r for r in records if r.get("event") == event]
    assert found, f"no {event!r} log line"
    return found[-1]


def test_backlog_saved_while_stopped_is_materialized_exactly_once(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    materializer = make_materializer(fleet.settings)
    materializer.start().wait_running()
    assert materializer.terminate() == 0

    ids = fleet.save(200)
    assert fleet.client.xlen(Stream.VEHICLES) == 200
    assert not fleet.online(ids)

    started = time.monotonic()
    materializer.start()
    fleet.wait_notified(ids)
    elapsed = time.monotonic() - started
    materializer.wait_running()  # reconciliation done

    assert fleet.online(ids) == set(ids)
    notified = fleet.notified()
    assert {vid: notified[vid] for vid in ids} == dict.fromkeys(ids, 1)
    # Reconciliation ran after the drain: it found nothing missing, so announced nothing.
    assert set(notified) == set(ids)
    assert fleet.pending() == 0
    records = materializer.log_records()
    recovered = _record(records, "recovered")
    assert recovered["backlog"] == 200
    assert _record(records, "reconciled")["missing"] == 0
    outcomes = [r for r in records if r.get("event") == "vehicle event"]
    assert len(outcomes) == 200
    assert {r["outcome"] for r in outcomes} == {"materialized"}
    assert all(r["entry_id"] and r["vehicle_id"] for r in outcomes)
    print(  # measured: reported with -s
        f"\n200-event backlog: drained in {recovered['duration_s']}s by the materializer, "
        f"{elapsed:.1f}s from process start (Feast import included)"
    )


def test_sigkill_mid_burst_loses_nothing(fleet: Fleet, make_materializer: MakeMaterializer) -> None:
    materializer = make_materializer(fleet.settings, batch_size=20)
    materializer.start().wait_running()

    ids: list[int] = []
    killed_at = None
    for _ in range(300):
        ids += fleet.save(1)
        if killed_at is None and len(fleet.notified()) >= 150:
            materializer.kill()
            killed_at = len(ids)
    if killed_at is None:
        materializer.kill()
    assert materializer.proc is not None
    assert materializer.proc.returncode == -signal.SIGKILL

    # Acknowledged means written: every acked entry's vehicle is online already.
    acked = fleet.acked_saved_ids()
    assert acked, "the kill came before anything was acknowledged"
    assert fleet.online(sorted(acked)) == acked

    pending_at_kill = fleet.pending()
    materializer.start()
    fleet.wait_notified(ids)
    assert fleet.online(ids) == set(ids)
    assert fleet.pending() == 0
    recovered = _record(materializer.wait_running().log_records(), "recovered")
    assert recovered["own_pending"] == pending_at_kill
    print(
        f"\nSIGKILL after {killed_at} of 300 saves; {len(acked)} acknowledged, "
        f"{pending_at_kill} pending at the kill; after restart: {recovered}"
    )
    # Acknowledgement and notification share a transaction: even across the kill, each
    # vehicle was announced once.
    notified = fleet.notified()
    assert {vid: notified[vid] for vid in ids} == dict.fromkeys(ids, 1)


def test_sigterm_exits_zero_and_acknowledges_only_finished_work(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    materializer = make_materializer(fleet.settings, batch_size=10)
    materializer.start().wait_running()
    assert materializer.probe().returncode == 0

    ids: list[int] = []
    stopped = False
    for _ in range(300):
        ids += fleet.save(1)
        if not stopped and len(fleet.notified()) >= 100:
            assert materializer.terminate() == 0
            stopped = True
    if not stopped:
        assert materializer.terminate() == 0

    acked = fleet.acked_saved_ids()
    assert fleet.online(sorted(acked)) == acked
    records = materializer.log_records()
    assert _record(records, "materializer stopped")
    assert _record(records, "shut down on signal")["signal"] == "SIGTERM"
    probe = materializer.probe()
    assert probe.returncode == 1
    assert "stopped" in probe.stdout

    materializer.start()
    fleet.wait_notified(ids)
    assert fleet.online(ids) == set(ids)
    assert fleet.pending() == 0
    notified = fleet.notified()
    assert {vid: notified[vid] for vid in ids} == dict.fromkeys(ids, 1)


def test_sigterm_during_start_up_is_a_clean_exit(
    isolated_settings: Settings, redis_client: redis.Redis, make_materializer: MakeMaterializer
) -> None:
    materializer = make_materializer(isolated_settings).start()
    assert materializer.proc is not None
    status = Path(f"/proc/{materializer.proc.pid}/status")
    if not status.exists():
        pytest.skip("needs /proc to see when the handler is installed")

    def handles_sigterm() -> bool:  # the SigCgt mask: signals with a handler
        caught = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt"))
        return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))

    wait_for(handles_sigterm, 30, "the SIGTERM handler")
    assert materializer.heartbeat() == {}  # still importing Feast: not started yet
    assert materializer.terminate() == 0, materializer.log_tail()
    assert materializer.heartbeat().get("phase") in (None, "stopped")


def test_entries_of_a_dead_consumer_are_reclaimed(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    fleet.client.xgroup_create(Stream.VEHICLES, MATERIALIZER_GROUP, id="0", mkstream=True)
    ids = fleet.save(5)
    # A consumer that read the entries and died before acknowledging them.
    fleet.client.xreadgroup(MATERIALIZER_GROUP, "ghost", {Stream.VEHICLES: ">"}, count=10)
    assert fleet.pending() == 5

    materializer = make_materializer(
        fleet.settings, consumer="m-live", min_idle_ms=0, claim_interval_s=0.5, prune_idle_ms=1
    )
    materializer.start()
    fleet.wait_notified(ids)
    assert fleet.online(ids) == set(ids)
    assert fleet.pending() == 0
    assert _record(materializer.wait_running().log_records(), "recovered")["reclaimed"] == 5

    def ghost_gone() -> bool:
        consumers = fleet.client.xinfo_consumers(Stream.VEHICLES, MATERIALIZER_GROUP)
        return {c["name"].decode() for c in consumers} == {"m-live"}

    # The dead consumer holds nothing and has been idle: it leaves the group.
    wait_for(ghost_gone, 30, "the idle ghost consumer to be pruned")


def test_own_pending_entries_are_processed_at_start_and_a_poison_entry_set_aside(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    fleet.client.xgroup_create(Stream.VEHICLES, MATERIALIZER_GROUP, id="0", mkstream=True)
    ids = fleet.save(3)
    # This consumer name read them and was killed; the first entry was delivered again
    # and again (each delivery ended in a crash): it is the likely cause.
    fleet.client.xreadgroup(MATERIALIZER_GROUP, "m-own", {Stream.VEHICLES: ">"}, count=10)
    for _ in range(3):
        fleet.client.xreadgroup(MATERIALIZER_GROUP, "m-own", {Stream.VEHICLES: "0"}, count=1)
    poison_id = fleet.client.xrange(Stream.VEHICLES, count=1)[0][0].decode()

    materializer = make_materializer(
        fleet.settings, consumer="m-own", min_idle_ms=3_600_000, max_deliveries=3
    )
    materializer.start().wait_running()

    assert fleet.online(ids) == set(ids)  # the poison one by reconciliation
    assert fleet.pending() == 0
    records = materializer.log_records()
    assert _record(records, "recovered")["own_pending"] == 3
    assert _record(records, "reconciled")["written"] == 1
    dead = fleet.client.xrange(Stream.VEHICLES_DEAD_LETTER)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"source_id"].decode() == poison_id
    assert b"delivered 5 times without an acknowledgement" in fields[b"error"]
    assert fleet.notified() == dict.fromkeys(ids, 1)


def test_a_replayed_event_leaves_the_same_state(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    materializer = make_materializer(fleet.settings)
    materializer.start().wait_running()
    (vid,) = fleet.save(1)
    fleet.wait_notified([vid])
    features = fleet.online_features(vid)
    keys = fleet.client.dbsize()

    for _ in range(2):
        events.publish(fleet.client, VehicleSaved(vehicle_id=vid))
    wait_for(lambda: fleet.notified()[vid] == 3, 60, "the replays to be processed")

    assert fleet.online_features(vid) == features
    assert fleet.client.dbsize() == keys  # no new online rows, no new streams
    assert fleet.pending() == 0
