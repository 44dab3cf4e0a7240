"""The feature-vector schemas (feature service and gateway) follow the one feature definition."""

from __future__ import annotations

from vroom_features import ENTITY_KEY, FEATURES, LABEL, TIMESTAMP_FIELD
from vroom_features.schemas import OfflineFeatureRow, VehicleFeatureVector
from vroom_gateway.schemas import VehicleFeaturesOut


def test_feature_vector_fields_follow_the_feature_definition() -> None:
    fields = VehicleFeatureVector.model_fields
    assert list(fields) == [ENTITY_KEY, *(f.name for f in FEATURES)]
    for feature in FEATURES:
        assert fields[feature.name].annotation is (int if feature.kind == "int" else float)


def test_offline_row_adds_label_and_event_time() -> None:
    extra = [
        name
        for name in OfflineFeatureRow.model_fields
        if name not in VehicleFeatureVector.model_fields
    ]
    assert extra == [LABEL, TIMESTAMP_FIELD]


def test_gateway_feature_answer_follows_the_feature_definition() -> None:
    fields = VehicleFeaturesOut.model_fields
    assert list(fields) == [ENTITY_KEY, *(f.name for f in FEATURES), "materialized", "store"]
    for feature in FEATURES:
        kind = int if feature.kind == "int" else float
        assert fields[feature.name].annotation == kind | None
        assert fields[feature.name].description == feature.doc
    # A vehicle without features anywhere answers with every feature null.
    empty = VehicleFeaturesOut(vehicle_id=7, materialized=False, store="none")
    assert all(getattr(empty, f.name) is None for f in FEATURES)
