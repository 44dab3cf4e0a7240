"""The model in-process: tensor checks, atomic swap, coalesced and failed reloads."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput, ModelNotReady

from tests.predictor.conftest import Served
from vroom_features.contract import INPUT_NAME, OUTPUT_NAME
from vroom_predictor.loading import LoadedModel, ModelLoadError, load_dir
from vroom_predictor.model import ReservationModel, features_from


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
    good = np.array([[1, 4, 0, 120, 5.0]], dtype=np.float32)
    assert features_from(request(good)).shape == (1, 5)
    with pytest.raises(InvalidInput, match="exactly one input tensor 'features'"):
        features_from(request(good, name="x"))
    with pytest.raises(InvalidInput, match="datatype must be FP32, got FP64"):
        features_from(request(good.astype(np.float64), dtype="FP64"))
    with pytest.raises(InvalidInput, match=r"shape must be \[N, 5\]"):
        features_from(request(good[:, :4]))
    with pytest.raises(InvalidInput, match="row 1 has a NaN"):
        features_from(request(np.vstack([good, [[1, 4, 0, np.nan, 5.0]]]).astype(np.float32)))


def test_not_ready_is_model_not_ready_not_a_crash(served: Served) -> None:
    model = ReservationModel("m", FakeSource(served.model_dir, [], fail_with="no champion yet"))
    assert model.load_initial() is False
    with pytest.raises(ModelNotReady, match="no champion yet"):
        asyncio.run(model.predict(request(np.ones((1, 5), dtype=np.float32))))


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
    response = asyncio.run(model.predict(request(np.ones((2, 5), dtype=np.float32))))
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
    assert before.predict(np.ones((1, 5), dtype=np.float32)).shape == (1,)
