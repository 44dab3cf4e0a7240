"""Invalid entries go to the dead-letter stream and never block the stream; caps hold."""

from __future__ import annotations

import json

import pytest

from tests.materializer.conftest import Fleet, MakeMaterializer, wait_for
from vroom_common import events
from vroom_common.events import Stream, VehicleMaterialized, VehicleSaved

pytestmark = pytest.mark.integration


def test_invalid_entries_are_dead_lettered_and_the_next_valid_one_processed(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    materializer = make_materializer(fleet.settings)
    materializer.start().wait_running()

    bad = {
        "not json": {"event": "not json"},
        "negative id": {"event": json.dumps({"type": "vehicle-saved", "vehicle_id": -5})},
        "wrong type": events.encode(VehicleMaterialized(vehicle_id=fleet.fleet_ids[0])),
        "unknown type": {"event": json.dumps({"type": "vehicle-sold", "vehicle_id": 3})},
        "newer schema": {
            "event": json.dumps({"type": "vehicle-saved", "vehicle_id": 3, "schema_version": 99})
        },
        "no event field": {"payload": "x"},
    }
    sources = {
        name: fleet.client.xadd(Stream.VEHICLES, dict(fields)).decode()
        for name, fields in bad.items()
    }
    (vid,) = fleet.save(1)
    fleet.wait_notified([vid], timeout=60)

    assert fleet.online([vid]) == {vid}
    assert fleet.pending() == 0
    assert set(fleet.notified()) == {vid}  # nothing announced for the invalid entries
    dead = {
        fields[b"source_id"].decode(): fields
        for _id, fields in fleet.client.xrange(Stream.VEHICLES_DEAD_LETTER)
    }
    assert set(dead) == set(sources.values())
    errors = {name: dead[sources[name]][b"error"].decode() for name in bad}
    for name, fields in bad.items():  # the original fields are kept as they were
        for key, value in fields.items():
            assert dead[sources[name]][key.encode()] == value.encode()
    assert "JSON" in errors["not json"]
    assert "vehicle_id" in errors["negative id"]
    assert "greater than 0" in errors["negative id"]
    assert "'vehicle-materialized' event" in errors["wrong type"]
    assert "vehicle-sold" in errors["unknown type"]
    assert "schema_version 99" in errors["newer schema"]
    assert "no 'event' field" in errors["no event field"]
    outcomes = [r for r in materializer.log_records() if r.get("event") == "vehicle event"]
    assert sorted(r["outcome"] for r in outcomes) == ["dead-lettered"] * 6 + ["materialized"]


def test_a_saved_vehicle_deleted_before_processing_is_acknowledged_without_a_write(
    fleet: Fleet, make_materializer: MakeMaterializer
) -> None:
    events.publish(fleet.client, VehicleSaved(vehicle_id=999_999))  # no such vehicle
    (vid,) = fleet.save(1)
    materializer = make_materializer(fleet.settings)
    materializer.start().wait_running()
    fleet.wait_notified([vid], timeout=60)
    assert fleet.pending() == 0
    assert 999_999 not in fleet.notified()
    outcomes = {
        r["vehicle_id"]: r["outcome"]
        for r in materializer.log_records()
        if r.get("event") == "vehicle event"
    }
    assert outcomes == {999_999: "vehicle-gone", vid: "materialized"}


def test_streams_are_capped(fleet: Fleet, make_materializer: MakeMaterializer) -> None:
    cap = 100  # the smallest the settings allow
    settings = fleet.settings.with_overrides(stream_maxlen=cap)
    materializer = make_materializer(settings)
    materializer.start().wait_running()
    assert materializer.terminate() == 0

    # 300 saves while stopped with a cap of 100: most entries are trimmed unread.
    saved = fleet.save(300, maxlen=cap)
    # Approximate trimming removes whole radix-tree nodes (100 entries by default).
    assert cap <= fleet.client.xlen(Stream.VEHICLES) <= 2 * cap

    materializer.start().wait_running()
    # Trimmed events are not lost work: reconciliation writes what they would have.
    assert fleet.online(saved) == set(saved)
    assert fleet.pending() == 0
    assert fleet.client.xlen(Stream.VEHICLE_NOTIFICATIONS) <= 2 * cap

    for i in range(300):
        fleet.client.xadd(Stream.VEHICLES, {"event": f"garbage {i}"}, maxlen=cap)
    wait_for(lambda: fleet.pending() == 0 and _drained(fleet), 60, "the garbage to be handled")
    assert cap <= fleet.client.xlen(Stream.VEHICLES_DEAD_LETTER) <= 2 * cap

    for _ in range(1000):
        events.publish(fleet.client, VehicleMaterialized(vehicle_id=1), maxlen=cap)
    assert fleet.client.xlen(Stream.VEHICLE_NOTIFICATIONS) <= 2 * cap


def _drained(fleet: Fleet) -> bool:
    (group,) = fleet.client.xinfo_groups(Stream.VEHICLES)
    last = fleet.client.xinfo_stream(Stream.VEHICLES)["last-generated-id"]
    return bool(group["last-delivered-id"] == last)
