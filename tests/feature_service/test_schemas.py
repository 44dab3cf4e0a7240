"""The shared feature-vector schema follows the one feature definition."""

from __future__ import annotations

from vroom_common.schemas import OfflineFeatureRow, VehicleFeatureVector
from vroom_features import ENTITY_KEY, FEATURES, LABEL, TIMESTAMP_FIELD


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
