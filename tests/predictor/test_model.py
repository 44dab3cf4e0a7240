"""The model in-process: tensor checks, output checks, atomic swap, coalesced and failed
reloads, unloads."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput, ModelNotReady
from onnx import TensorProto, helper, numpy_helper

from tests.predictor.conftest import Served
from tests.predictor.faulty import Fault, faulty_model_dir
from vroom_features.contract import INPUT_NAME, N_FEATURES, ONNX_FILE, OUTPUT_NAME
from vroom_predictor.loading import PROBE_ROW, LoadedModel, ModelLoadError, load_dir
from vroom_predictor.model import InvalidPrediction, ReservationModel, features_from


def request(values: np.ndarray, name: str = INPUT_NAME, dtype: str = "FP32") -> InferRequest:
    tensor = InferInput(name, list(values.shape), dtype)
    tensor.set_data_from_numpy(values, binary_data=False)
    return InferRequest("m", infer_inputs=[tensor])


@dataclass
class FakeSource:
    """Versions from a list; each fetch takes ``delay`` seconds and is counted."""

    model_dir: Path
    versions: list[str]
    delay: float = 0.2
    fetches: int = 0
    fail_with: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> str:
        return "fake"

    def fetch(self, current: str | None) -> LoadedModel | None:
        with self.lock:
            self.fetches += 1
        time.sleep(self.delay)
        if self.fail_with:
            raise ModelLoadError(self.fail_with)
        latest = self.versions[-1]
        return None if latest == current else load_dir(self.model_dir, version=latest)


def test_features_from_accepts_the_contract_and_names_each_broken_rule() -> None:
    good = PROBE_ROW.copy()
    assert features_from(request(good)).shape == (1, N_FEATURES)
    with pytest.raises(InvalidInput, match="exactly one input tensor 'features'"):
        features_from(request(good, name="x"))
    with pytest.raises(InvalidInput, match="datatype must be FP32, got FP64"):
        features_from(request(good.astype(np.float64), dtype="FP64"))
    with pytest.raises(InvalidInput, match=rf"shape must be \[N, {N_FEATURES}\]"):
        features_from(request(good[:, :-1]))
    with pytest.raises(InvalidInput, match="row 1 has a NaN"):
        features_from(request(np.vstack([good, [[1, 4, 0, np.nan, 5.0, 1.1]]]).astype(np.float32)))


def test_not_ready_is_model_not_ready_not_a_crash(served: Served) -> None:
    model = ReservationModel("m", FakeSource(served.model_dir, [], fail_with="no champion yet"))
    assert model.load_initial() is False
    with pytest.raises(ModelNotReady, match="no champion yet"):
        asyncio.run(model.predict(request(np.ones((1, N_FEATURES), dtype=np.float32))))


def test_concurrent_reloads_coalesce_and_swap_once(served: Served) -> None:
    source = FakeSource(served.model_dir, ["1"])
    swapped: list[str] = []

    async def on_swap(loaded: LoadedModel) -> None:
        swapped.append(loaded.version)

    model = ReservationModel("m", source, on_swap)
    assert model.load_initial()
    source.fetches = 0
    source.versions.append("2")

    async def many() -> list[str]:
        results = await asyncio.gather(*(model.reload() for _ in range(20)))
        return [r.status for r in results]

    statuses = asyncio.run(many())
    # One load served every request queued while it ran (at most one more for late ones).
    assert source.fetches <= 2
    assert statuses.count("reloaded") == 1
    assert swapped == ["2"]
    assert model.current is not None
    assert model.current.version == "2"


def test_a_failed_reload_keeps_the_previous_model(served: Served) -> None:
    source = FakeSource(served.model_dir, ["1"], delay=0)
    model = ReservationModel("m", source)
    model.load_initial()
    source.versions.append("2")
    source.fail_with = "model.onnx is not a loadable ONNX model"
    with pytest.raises(ModelLoadError, match="not a loadable"):
        asyncio.run(model.reload())
    assert model.last_error == "model.onnx is not a loadable ONNX model"
    response = asyncio.run(model.predict(request(np.ones((2, N_FEATURES), dtype=np.float32))))
    assert response.model_version == "1"
    assert response.outputs[0].name == OUTPUT_NAME


def test_requests_in_flight_finish_on_the_model_they_started_with(served: Served) -> None:
    source = FakeSource(served.model_dir, ["1"], delay=0)
    model = ReservationModel("m", source)
    model.load_initial()
    before = model.current
    source.versions.append("2")
    asyncio.run(model.reload())
    # The old LoadedModel object is untouched by the swap and still predicts.
    assert before is not None
    assert before.version == "1"
    assert before.predict(np.ones((1, N_FEATURES), dtype=np.float32)).shape == (1,)


def test_a_model_faulty_off_the_probe_row_passes_the_load_check(tmp_path: Path) -> None:
    loaded = load_dir(faulty_model_dir(tmp_path / "nan", "nan"), version="7")
    assert loaded.predict(PROBE_ROW).tolist() == [0.0]
    off_probe = PROBE_ROW.copy()
    off_probe[0, 3] += 10
    assert np.isnan(loaded.predict(off_probe)).all()


@pytest.mark.parametrize(("fault", "value"), [("nan", "nan"), ("negative", "-100.0")])
def test_a_prediction_that_is_not_a_count_fails_naming_model_version_and_row(
    tmp_path: Path, fault: Fault, value: str
) -> None:
    source = FakeSource(faulty_model_dir(tmp_path / fault, fault), ["7"], delay=0)
    model = ReservationModel("vroom-forecast-candidate", source, optional=True)
    assert model.load_initial()
    rows = np.vstack([PROBE_ROW, PROBE_ROW, PROBE_ROW])
    rows[2, 3] += 10
    with pytest.raises(InvalidPrediction) as caught:
        asyncio.run(model.predict(request(rows)))
    assert str(caught.value) == (
        f"model vroom-forecast-candidate v7 produced an invalid prediction at row 2: {value} "
        "(a count must be finite and >= 0)"
    )
    assert caught.value.status_code.name == "INTERNAL"
    response = asyncio.run(model.predict(request(rows[:2])))  # good rows still answer
    assert response.outputs[0].as_numpy().tolist() == [0.0, 0.0]


def test_unload_drops_the_version_and_a_reload_serves_again(served: Served) -> None:
    source = FakeSource(served.model_dir, ["1"], delay=0)
    model = ReservationModel("m", source)
    model.load_initial()
    assert asyncio.run(model.unload()) == "1"
    assert model.current is None
    assert not model.ready
    with pytest.raises(ModelNotReady, match="unloaded"):
        asyncio.run(model.predict(request(np.ones((1, N_FEATURES), dtype=np.float32))))
    assert asyncio.run(model.unload()) is None  # unloading twice is harmless
    result = asyncio.run(model.reload())
    assert (result.status, result.previous_version, result.current_version) == (
        "reloaded",
        None,
        "1",
    )
    assert model.ready


def test_an_unload_waits_for_a_reload_in_progress_and_a_reload_behind_it_loads(
    served: Served,
) -> None:
    source = FakeSource(served.model_dir, ["1"], delay=0)
    model = ReservationModel("m", source)
    model.load_initial()
    source.versions.append("2")
    source.delay = 0.2
    source.fetches = 0

    async def interleaved() -> tuple[str | None, list[str | None]]:
        first = asyncio.create_task(model.reload())  # holds the lock while it fetches
        await asyncio.sleep(0.05)
        second = asyncio.create_task(model.reload())  # queued: its load will cover `after`
        await asyncio.sleep(0)
        unload = asyncio.create_task(model.unload())  # queued behind `second`
        await asyncio.sleep(0)
        after = asyncio.create_task(model.reload())  # queued behind the unload
        await asyncio.sleep(0)
        results = await asyncio.gather(first, second, after)
        return await unload, [r.current_version for r in results]

    dropped, versions = asyncio.run(interleaved())
    assert dropped == "2"  # the unload came after the first two reloads ...
    assert versions == ["2", "2", "2"]
    assert source.fetches == 3  # ... and the reload after it loaded again, not coalesced
    assert model.ready
    assert model.current is not None
    assert model.current.version == "2"


def sum_of_columns_model(dst: Path, width: int) -> Path:
    """A model directory whose graph is ``width`` columns wide and predicts their sum."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", [INPUT_NAME, "axes"], [OUTPUT_NAME], keepdims=0)],
        f"sum_{width}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    dst.mkdir(parents=True)
    onnx.save(model, str(dst / ONNX_FILE))
    return dst


def test_a_model_trained_before_the_feature_list_grew_gets_the_first_columns(
    tmp_path: Path,
) -> None:
    """The list is append-only: a five-wide champion keeps serving six-wide requests."""
    loaded = load_dir(sum_of_columns_model(tmp_path / "five", N_FEATURES - 1), version="3")
    rows = np.vstack([PROBE_ROW, PROBE_ROW * 2])
    assert loaded.width == N_FEATURES - 1
    np.testing.assert_allclose(loaded.predict(rows), rows[:, :-1].sum(axis=1), rtol=1e-6)
    full = load_dir(sum_of_columns_model(tmp_path / "six", N_FEATURES), version="4")
    np.testing.assert_allclose(full.predict(rows), rows.sum(axis=1), rtol=1e-6)


def test_a_model_wider_than_the_feature_list_does_not_load(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=rf"input width {N_FEATURES + 1} is not 1..6"):
        load_dir(sum_of_columns_model(tmp_path / "seven", N_FEATURES + 1), version="5")
