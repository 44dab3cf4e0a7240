"""The one feature definition of vroom-forecast.

``transforms`` computes features from raw attributes with numpy and pandas only (so the
predictor and training code can use it without Feast); ``definitions`` declares the
Feast objects (entity, sources, feature view) built from the same feature list;
``store`` opens a Feast ``FeatureStore`` configured from the project's settings.
"""

from vroom_features.transforms import (
    ENTITY_KEY,
    FEATURE_NAMES,
    FEATURES,
    LABEL,
    TIMESTAMP_FIELD,
    Feature,
    compute_features,
    feature_matrix,
    feature_row,
)

__all__ = [
    "ENTITY_KEY",
    "FEATURES",
    "FEATURE_NAMES",
    "LABEL",
    "TIMESTAMP_FIELD",
    "Feature",
    "compute_features",
    "feature_matrix",
    "feature_row",
]
