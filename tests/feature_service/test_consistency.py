"""The one feature definition, proven on the real fleet: features computed on the fly
from each vehicle's raw attributes equal the features batch materialization wrote to
the online store, for every vehicle, in one batch and one by one."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.feature_service.conftest import Materialized
from tests.realdata import needs_real_data
from vroom_common.schemas import RAW_ATTRIBUTES
from vroom_features import FEATURE_NAMES


@needs_real_data
def test_on_the_fly_equals_materialized_for_the_whole_fleet(
    client: TestClient, materialized: Materialized, fleet: list[dict[str, Any]]
) -> None:
    assert materialized.real_data
    assert len(fleet) == 1000
    ids = [vehicle["vehicle_id"] for vehicle in fleet]
    raw = [{name: vehicle[name] for name in RAW_ATTRIBUTES} for vehicle in fleet]

    online = client.post("/v1/features/online", json={"vehicle_ids": ids}).json()
    computed = client.post("/v1/features/compute", json={"vehicles": raw}).json()

    assert online["missing"] == []
    stored = {v["vehicle_id"]: [v[name] for name in FEATURE_NAMES] for v in online["found"]}
    assert computed["feature_names"] == list(FEATURE_NAMES)
    batch = dict(zip(ids, computed["features"], strict=True))
    assert batch == stored  # all 1,000 in one request

    one_by_one = {
        vehicle_id: client.post("/v1/features/compute", json={"vehicles": [attributes]}).json()[
            "features"
        ][0]
        for vehicle_id, attributes in zip(ids, raw, strict=True)
    }
    assert one_by_one == stored  # one request per vehicle
