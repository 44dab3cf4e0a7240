"""Feast objects for the vehicle features, built from the one feature list.

:func:`build` makes them for a given offline-store path; the module-level objects
(what `feast apply` run in ``feature_repo/`` registers) use the configured default.
The project's own code registers :func:`build`'s result with its own settings
(:func:`vroom_features.store.apply_definitions`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Final, NamedTuple

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64, PrimitiveFeastType

from vroom_common.settings import get_settings
from vroom_features.transforms import ENTITY_KEY, FEATURES, TIMESTAMP_FIELD

#: How long an online feature row stays valid after its event time. Vehicles are
#: re-materialized by every batch run and on every save, so a year is generous.
FEATURE_TTL: Final = timedelta(days=365)
FEATURE_VIEW_NAME: Final = "vehicle_features"
PUSH_SOURCE_NAME: Final = "vehicle_push"

_FEAST_TYPE: Final[dict[str, PrimitiveFeastType]] = {"int": Int64, "float": Float64}


class Definitions(NamedTuple):
    entity: Entity
    file_source: FileSource
    push_source: PushSource
    feature_view: FeatureView


def build(offline_store_path: Path) -> Definitions:
    """The Feast objects, with the offline store at ``offline_store_path``."""
    # A listing on the marketplace, keyed by its id.
    entity = Entity(
        name="vehicle",
        join_keys=[ENTITY_KEY],
        value_type=ValueType.INT64,
        description="A vehicle listing.",
    )
    # The Parquet offline store written by batch materialization (fleet + label).
    file_source = FileSource(
        name="vehicle_features_file",
        path=str(offline_store_path),
        timestamp_field=TIMESTAMP_FIELD,
        description="Offline store: features and label of the fleet (the training set).",
    )
    # Event-driven freshness: the materializer pushes a saved vehicle's features here.
    push_source = PushSource(
        name=PUSH_SOURCE_NAME,
        batch_source=file_source,
        description="Features of vehicles saved through the API, pushed by the materializer.",
    )
    # What serving reads: the model's features for one vehicle.
    feature_view = FeatureView(
        name=FEATURE_VIEW_NAME,
        entities=[entity],
        ttl=FEATURE_TTL,
        schema=[Field(name=f.name, dtype=_FEAST_TYPE[f.kind], description=f.doc) for f in FEATURES],
        source=push_source,
        online=True,
        description="The reservation model's input features.",
    )
    return Definitions(entity, file_source, push_source, feature_view)


# Module-level objects for `feast apply` / `feast plan` run by hand in feature_repo/.
vehicle, vehicle_features_file, vehicle_push, vehicle_features = build(
    get_settings().offline_store_path
)
