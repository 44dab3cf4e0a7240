"""The rollout tests' candidate models do what their kind says (in-process, no servers)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import pandas as pd
import pytest

from tests.rollout import candidates
from vroom_features import FEATURE_NAMES, compute_features
from vroom_features.contract import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, REGISTRATION_FILE
from vroom_pipelines.synthetic import generate_fleet
from vroom_pipelines.train import TrainConfig, export_onnx, fit_model, save_model_dir
from vroom_predictor.loading import PROBE_ROW, LoadedModel, ModelLoadError, load_dir

#: Timed single-row calls per model in the latency comparison.
LATENCY_CALLS = 20


class Source(NamedTuple):
    """A small trained model's directory and feature rows of its fleet."""

    model_dir: Path
    rows: np.ndarray  # float32 [N, 5], every description != 120


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A tiny model trained and exported as training does, in an MLflow model directory
    (saved locally: no server), with a registration file the candidates must drop."""
    fleet = generate_fleet(300, seed=11)
    raw = pd.DataFrame(fleet.vehicles).set_index("vehicle_id")
    counts = pd.Series([r["vehicle_id"] for r in fleet.reservations]).value_counts()
    y = counts.reindex(raw.index, fill_value=0).astype("float64")
    x = compute_features(raw)[list(FEATURE_NAMES)]
    config = TrainConfig(n_estimators=20, min_samples_leaf=15)
    model = fit_model(config, x, y.to_numpy())
    proto, _diff = export_onnx(model, x)
    model_dir = tmp_path_factory.mktemp("source") / "model"
    save_model_dir(model_dir, model, proto, x)
    (model_dir / REGISTRATION_FILE).write_text(json.dumps({"model_name": "m", "version": "3"}))
    rows = x[x["description"] != candidates.PROBE_DESCRIPTION].head(8).to_numpy(np.float32)
    return Source(model_dir, rows)


def contract(model_dir: Path) -> list[tuple[str, int, list[int | str]]]:
    """Name, element type and shape of each graph input and output."""
    graph = onnx.load(str(model_dir / ONNX_FILE)).graph
    return [
        (
            v.name,
            v.type.tensor_type.elem_type,
            [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim],
        )
        for v in (*graph.input, *graph.output)
    ]


def median_single_row_ms(model: LoadedModel, row: np.ndarray) -> float:
    model.predict(row)  # warm-up
    samples = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        model.predict(row)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def test_same_predicts_as_the_original(source: Source, tmp_path: Path) -> None:
    dst = candidates.same(source.model_dir, tmp_path / "same")

    assert dst == tmp_path / "same"
    assert (dst / ONNX_FILE).read_bytes() == (source.model_dir / ONNX_FILE).read_bytes()
    assert (dst / "MLmodel").is_file()
    assert not (dst / REGISTRATION_FILE).exists()
    original = load_dir(source.model_dir).predict(source.rows)
    assert np.array_equal(load_dir(dst).predict(source.rows), original)


def test_constant_answers_the_value_for_every_row(source: Source, tmp_path: Path) -> None:
    dst = candidates.constant(source.model_dir, tmp_path / "constant")

    assert contract(dst) == contract(source.model_dir)
    assert not (dst / REGISTRATION_FILE).exists()
    loaded = load_dir(dst)
    raw = loaded.session.run([OUTPUT_NAME], {INPUT_NAME: source.rows})[0]
    assert raw.shape == (len(source.rows), 1)  # the original's [N, 1]
    assert raw.dtype == np.float32
    assert np.array_equal(loaded.predict(source.rows), np.full(len(source.rows), 50.0))
    other = candidates.constant(source.model_dir, tmp_path / "seven", value=7.5)
    assert np.array_equal(load_dir(other).predict(PROBE_ROW), [7.5])


def test_failing_loads_but_answers_nan_off_the_probe(source: Source, tmp_path: Path) -> None:
    dst = candidates.failing(source.model_dir, tmp_path / "failing")

    assert contract(dst) == contract(source.model_dir)
    loaded = load_dir(dst)  # the probe check passes
    original = load_dir(source.model_dir)
    assert np.array_equal(loaded.predict(PROBE_ROW), original.predict(PROBE_ROW))
    assert np.isnan(loaded.predict(source.rows)).all()
    # One bad row in a batch spoils only its own answer.
    mixed = np.vstack([PROBE_ROW, source.rows[:1]])
    got = loaded.predict(mixed)
    assert np.isfinite(got[0])
    assert np.isnan(got[1])


def test_slow_predicts_as_the_original_but_later(source: Source, tmp_path: Path) -> None:
    extra_ms = 40.0
    dst = candidates.slow(source.model_dir, tmp_path / "slow", extra_ms=extra_ms)

    assert contract(dst) == contract(source.model_dir)
    assert not (dst / REGISTRATION_FILE).exists()
    assert (dst / ONNX_FILE).stat().st_size < 4 * 2**20  # one shared matrix
    original, slowed = load_dir(source.model_dir), load_dir(dst)
    assert np.array_equal(slowed.predict(source.rows), original.predict(source.rows))
    row = source.rows[:1]
    base_ms = median_single_row_ms(original, row)
    slow_ms = median_single_row_ms(slowed, row)
    print(
        f"single row: original {base_ms:.3f} ms, slow {slow_ms:.3f} ms "
        f"({candidates.slow_layers(dst)} layers)"
    )
    assert slow_ms - base_ms >= extra_ms * 0.6


def test_unloadable_fails_to_load(source: Source, tmp_path: Path) -> None:
    dst = candidates.unloadable(source.model_dir, tmp_path / "unloadable")

    assert (dst / "MLmodel").is_file()
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        load_dir(dst)


def test_copies_refuse_a_non_empty_destination(source: Source, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        candidates.same(source.model_dir, tmp_path / "taken")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert candidates.same(source.model_dir, empty) == empty
