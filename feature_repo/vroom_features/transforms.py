"""Feature logic: from the six raw attributes to the features the stores hold.

This is the only place that says which features exist, in which order, and how each
is computed. Batch materialization, the event-driven materializer, on-the-fly
serving and training all call :func:`compute_features`, so the features a model
was trained on are by construction the features it is served.

The list is append-only: a feature is added at the end and none is removed or
reordered, so a model trained on the first *k* features keeps serving after the
list grows (``vroom_features.contract.model_columns``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from vroom_common.schemas import RAW_ATTRIBUTES

#: The entity's join key in every store and table.
ENTITY_KEY: Final = "vehicle_id"
#: The training label: observed reservation count (null for new arrivals).
LABEL: Final = "num_reservations"
#: Event-time column of the offline store and of online writes.
TIMESTAMP_FIELD: Final = "event_timestamp"

#: Decimals kept in ``price_diff``. float32 (the serving runtime's input type) cannot
#: tell 8.849999999999994 from 8.85; rounding makes both paths see the same value.
PRICE_DIFF_DECIMALS: Final = 2
#: Decimals kept in ``price_ratio``, for the same reason.
PRICE_RATIO_DECIMALS: Final = 4
#: Largest ``price_ratio``: valid prices are any positive number, and a tiny
#: recommended price would otherwise give an infinite ratio, which no store or tensor
#: carries. Real ratios are 0.8 to 2.
PRICE_RATIO_MAX: Final = 1e4


def _raw(column: str) -> Callable[[Any], Any]:
    """A feature that is a raw attribute taken as is."""
    return lambda raw: raw[column]


def price_diff(raw: Any) -> Any:
    """``actual_price - recommended_price`` in cents precision (scalar or column)."""
    return np.round(raw["actual_price"] - raw["recommended_price"], PRICE_DIFF_DECIMALS)


def price_ratio(raw: Any) -> Any:
    """``actual_price / recommended_price`` to 4 decimals, at most ``PRICE_RATIO_MAX``
    (scalar or column): how far a host prices above the platform's advice, the
    strongest single signal."""
    ratio = np.minimum(raw["actual_price"] / raw["recommended_price"], PRICE_RATIO_MAX)
    return np.round(ratio, PRICE_RATIO_DECIMALS)


@dataclass(frozen=True)
class Feature:
    """A model feature: its column name, value kind, meaning and computation.

    ``compute`` takes either a mapping of scalars (one vehicle) or a DataFrame
    (many vehicles) and uses only operations valid for both, so one expression
    defines the feature on every path.
    """

    name: str
    kind: Literal["int", "float"]
    doc: str
    compute: Callable[[Any], Any]


#: The features, in the order of the model's input tensor (append-only, see above).
FEATURES: Final[tuple[Feature, ...]] = (
    Feature(
        "technology", "int", "Instant-booking tech package installed (0/1).", _raw("technology")
    ),
    Feature("num_images", "int", "Photos on the listing.", _raw("num_images")),
    Feature("street_parked", "int", "Parked on the street (0/1).", _raw("street_parked")),
    Feature("description", "int", "Character count of the description.", _raw("description")),
    Feature("price_diff", "float", "actual_price - recommended_price, to cents.", price_diff),
    Feature(
        "price_ratio", "float", "actual_price / recommended_price, to 4 decimals.", price_ratio
    ),
)
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
_DTYPE: Final = {"int": np.dtype("int64"), "float": np.dtype("float64")}


def compute_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Features for each row of raw attributes, columns in :data:`FEATURE_NAMES` order.

    Args:
        raw: One row per vehicle with at least the six raw attribute columns
            (``technology, actual_price, recommended_price, num_images,
            street_parked, description``). Other columns are ignored.

    Returns:
        A frame with the same index and exactly the feature columns: integers as
        ``int64``, floats as ``float64``.
    """
    numeric = raw.astype({"actual_price": "float64", "recommended_price": "float64"})
    return pd.DataFrame(
        {
            f.name: pd.Series(f.compute(numeric), index=raw.index).astype(_DTYPE[f.kind])
            for f in FEATURES
        },
        index=raw.index,
    )


def feature_matrix(raw: Mapping[str, Any]) -> np.ndarray:
    """Features of many vehicles from raw attribute columns, ``[N, len(FEATURES)]``
    float64 in :data:`FEATURE_NAMES` order (the logic of :func:`compute_features`,
    on numpy columns: no frame to build, so cheap at any size).

    Args:
        raw: Each raw attribute name -> a sequence of N values (other keys ignored).
    """
    columns = {k: np.asarray(raw[k], dtype=np.float64) for k in RAW_ATTRIBUTES}
    return np.column_stack([np.asarray(f.compute(columns), dtype=np.float64) for f in FEATURES])


def feature_row(raw: Mapping[str, float | int]) -> list[float]:
    """One vehicle's feature vector, in model order (the logic of :func:`compute_features`)."""
    scalars = {k: float(raw[k]) for k in RAW_ATTRIBUTES}  # other keys are ignored
    return [float(f.compute(scalars)) for f in FEATURES]
