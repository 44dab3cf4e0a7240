"""The one feature definition: values, order, types, and the Feast objects built from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vroom_common.settings import Settings
from vroom_features import FEATURE_NAMES, FEATURES, compute_features, feature_matrix, feature_row
from vroom_features.contract import N_FEATURES
from vroom_features.definitions import FEATURE_VIEW_NAME, build
from vroom_features.store import feast_config, redis_connection_string

RAW = pd.DataFrame(
    {
        "vehicle_id": [1, 2, 3],
        "technology": [1, 0, 0],
        "actual_price": [67.85, 100.7, 74.0],
        "recommended_price": [59, 53, 74],
        "num_images": [5, 5, 4],
        "street_parked": [0, 0, 1],
        "description": [7, 224, 21],
    }
)


def test_features_come_out_in_model_order_with_integer_and_float_types() -> None:
    features = compute_features(RAW)
    assert tuple(features.columns) == FEATURE_NAMES
    assert FEATURE_NAMES == (
        "technology",
        "num_images",
        "street_parked",
        "description",
        "price_diff",
        "price_ratio",
    )
    assert N_FEATURES == 6
    assert [str(t) for t in features.dtypes] == ["int64"] * 4 + ["float64"] * 2


def test_the_first_five_features_stay_those_of_the_first_model() -> None:
    """Append-only: a model trained on the first five keeps its columns."""
    assert FEATURE_NAMES[:5] == (
        "technology",
        "num_images",
        "street_parked",
        "description",
        "price_diff",
    )


def test_price_diff_is_actual_minus_recommended_rounded_to_cents() -> None:
    features = compute_features(RAW)
    # 67.85 - 59 is 8.849999999999994 in binary floating point; the feature says 8.85.
    assert 67.85 - 59 != 8.85
    assert features["price_diff"].tolist() == [8.85, 47.7, 0.0]


def test_price_ratio_is_actual_over_recommended_to_four_decimals() -> None:
    features = compute_features(RAW)
    assert features["price_ratio"].tolist() == [1.15, 1.9, 1.0]
    # Exactly representable after the float32 cast the predictor makes: both paths agree.
    ratio = features["price_ratio"].to_numpy()
    assert np.array_equal(np.round(ratio.astype(np.float32).astype(np.float64), 4), ratio)


def test_price_ratio_stays_finite_for_any_valid_prices() -> None:
    """Prices are any positive number: a denormal recommended price must not give an
    infinite feature (a JSON null, a rejected tensor) on either path."""
    extreme = RAW.assign(actual_price=[1e6, 1e-300, 50.0], recommended_price=[5e-324, 1e6, 1e-9])
    ratio = compute_features(extreme)["price_ratio"].tolist()
    assert ratio == [1e4, 0.0, 1e4]
    rows = [feature_row({**r, "source": "csv"}) for r in extreme.to_dict("records")]
    assert [row[-1] for row in rows] == ratio


def test_single_row_path_equals_the_frame_path() -> None:
    frame = compute_features(RAW).to_numpy(dtype=float)
    rows = np.array([feature_row({**r, "source": "csv"}) for r in RAW.to_dict("records")])
    np.testing.assert_array_equal(rows, frame)


@pytest.mark.parametrize("n", [1, 1000])
def test_column_path_equals_the_frame_path(n: int) -> None:
    rng = np.random.default_rng(n)
    raw = pd.DataFrame(
        {
            "technology": rng.integers(0, 2, n),
            "actual_price": np.round(rng.uniform(1, 500, n), 2),
            "recommended_price": np.round(rng.uniform(1, 500, n), 2),
            "num_images": rng.integers(0, 30, n),
            "street_parked": rng.integers(0, 2, n),
            "description": rng.integers(0, 2000, n),
        }
    )
    columns = {name: raw[name].tolist() for name in raw.columns}  # as a request holds them
    matrix = feature_matrix(columns)
    assert matrix.shape == (n, len(FEATURES))
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, compute_features(raw).to_numpy(dtype=float))
    extreme = {**columns, "actual_price": [1e6] * n, "recommended_price": [5e-324] * n}
    assert set(feature_matrix(extreme)[:, -1]) == {1e4}


def test_raw_columns_other_than_the_six_are_ignored_and_missing_ones_fail() -> None:
    features = compute_features(RAW.assign(extra="x"))
    assert "extra" not in features.columns
    with pytest.raises(KeyError, match="actual_price"):
        compute_features(RAW.drop(columns=["actual_price"]))


def test_feast_objects_are_built_from_the_feature_list(tmp_path: Path) -> None:
    definitions = build(tmp_path / "offline.parquet")
    view = definitions.feature_view
    assert view.name == FEATURE_VIEW_NAME
    assert [f.name for f in view.features] == [f.name for f in FEATURES]
    assert definitions.entity.join_key == "vehicle_id"
    assert definitions.file_source.path == str(tmp_path / "offline.parquet")


def test_feast_config_takes_registry_and_redis_from_settings(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis_url="redis://:s3cret@redis.example:6390/2")
    config = feast_config(settings)
    assert config.project == "vroom_forecast"
    assert config.registry.path == str(tmp_path / "feast" / "registry.db")
    timeouts = "socket_connect_timeout=2,socket_timeout=5"
    assert (
        config.online_store.connection_string
        == f"redis.example:6390,db=2,{timeouts},password=s3cret"
    )
    assert redis_connection_string(Settings(redis_port=7000)) == f"127.0.0.1:7000,db=0,{timeouts}"
