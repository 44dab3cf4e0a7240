"""The predictor over the wire: KServe's own gRPC client, REST v2, metadata, bad tensors."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest, InferResponse
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tests.conftest import Champion
from tests.predictor.conftest import Served
from vroom_features import FEATURE_NAMES
from vroom_features.contract import INPUT_DATATYPE, INPUT_NAME, N_FEATURES, OUTPUT_NAME

pytestmark = pytest.mark.integration


def grpc_infer(
    served: Served, features: np.ndarray, model_name: str | None = None
) -> InferResponse:
    """Inference over gRPC on ``model_name`` (default: the champion's name)."""

    async def call() -> InferResponse:
        tensor = InferInput(INPUT_NAME, list(features.shape), INPUT_DATATYPE)
        tensor.set_data_from_numpy(features.astype(np.float32))
        name = model_name or served.settings.model_name
        request = InferRequest(name, infer_inputs=[tensor])
        async with InferenceGRPCClient(served.grpc, timeout=10, retries=0) as client:
            return await client.infer(request)

    return asyncio.run(call())


def rest_infer(served: Served, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{served.rest}/v2/models/{served.settings.model_name}/infer", json=body, timeout=10
    )


def tensor(
    shape: list[int], data: list[Any], name: str = INPUT_NAME, dtype: str = "FP32"
) -> dict[str, Any]:
    return {"inputs": [{"name": name, "datatype": dtype, "shape": shape, "data": data}]}


@pytest.fixture(scope="module")
def fleet(champion: Champion) -> tuple[np.ndarray, np.ndarray]:
    """The whole fleet's features (float32) and the sklearn champion's predictions."""
    settings = champion.settings
    x = pd.read_parquet(settings.offline_store_path)[list(FEATURE_NAMES)].astype(np.float32)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    sk_model = mlflow.sklearn.load_model(f"models:/{settings.model_name}@champion")
    return x.to_numpy(), np.asarray(sk_model.predict(x))


def test_grpc_single_row_and_whole_fleet_match_sklearn(
    served: Served, fleet: tuple[np.ndarray, np.ndarray]
) -> None:
    x, expected = fleet
    one = grpc_infer(served, x[:1])
    assert one.outputs[0].name == OUTPUT_NAME
    assert one.outputs[0].shape == [1]
    assert abs(float(one.outputs[0].as_numpy()[0]) - expected[0]) <= 1e-4

    rows = x[:1000]
    many = grpc_infer(served, rows)
    got = many.outputs[0].as_numpy()
    assert got.shape == (len(rows),)
    assert float(np.max(np.abs(got - expected[: len(rows)]))) <= 1e-4
    assert many.model_version == "1"


def test_rest_inference_reports_version_and_run(
    served: Served, fleet: tuple[np.ndarray, np.ndarray]
) -> None:
    x, expected = fleet
    response = rest_infer(served, tensor([2, N_FEATURES], x[:2].ravel().tolist()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "1"
    assert body["parameters"]["run_id"]
    assert np.allclose(body["outputs"][0]["data"], expected[:2], atol=1e-4)


def test_metadata_lists_the_tensor_contract_and_the_loaded_version(served: Served) -> None:
    meta = httpx.get(f"{served.rest}/v2/models/{served.settings.model_name}", timeout=5).json()
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 6]}]
    assert meta["outputs"] == [
        {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1]},
        # One column per level of INTERVAL_LEVELS.
        {"name": "interval_lower", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "interval_upper", "datatype": "FP32", "shape": [-1, 4]},
    ]


def test_one_inference_answers_the_point_and_the_bounds(served: Served) -> None:
    rows = [[1.0, 5.0, 0.0, 7.0, 8.85, 1.15], [0.0, 12.0, 1.0, 250.0, -20.0, 0.75]]
    body = {"inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [2, 6], "data": rows}]}
    answer = httpx.post(
        f"{served.rest}/v2/models/{served.settings.model_name}/infer", json=body, timeout=5
    ).json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert set(outputs) == {OUTPUT_NAME, "interval_lower", "interval_upper"}
    point = outputs[OUTPUT_NAME]["data"]
    assert outputs["interval_lower"]["shape"] == [2, 4]
    lower = [outputs["interval_lower"]["data"][i * 4 : i * 4 + 4] for i in range(2)]
    upper = [outputs["interval_upper"]["data"][i * 4 : i * 4 + 4] for i in range(2)]
    for row in range(2):
        assert all(0 <= low <= point[row] for low in lower[row])
        assert all(high >= point[row] for high in upper[row])
        assert lower[row] == sorted(lower[row], reverse=True)  # wider at higher levels


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            tensor([1, 6], [1, 4, 0, 10, 2.5, 1.05], name="x"),
            "expected exactly one input tensor 'features'",
        ),
        (tensor([1, 6], [1, 4, 0, 10, 2.5, 1.05], dtype="FP64"), "datatype must be FP32, got FP64"),
        # A five-wide row (the first model's features) is not the contract any more.
        (tensor([1, 5], [1, 4, 0, 10, 2.5]), "shape must be [N, 6]"),
        (tensor([6], [1, 4, 0, 10, 2.5, 1.05]), "shape must be [N, 6]"),
        (tensor([2, 6], [1, 4, 0, 10, 2.5, 1.05]), "data does not fill shape [2, 6]"),
        (tensor([1, 6], [1, 4, 0, 10, 2.5, "NaN"]), "row 0 has a NaN or infinite value"),
    ],
)
def test_bad_tensors_get_400_naming_the_problem(
    served: Served, body: dict[str, Any], message: str
) -> None:
    response = rest_infer(served, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.ones((1, 5), dtype=np.float32), "shape must be [N, 6]"),
        (np.array([[1, 4, 0, 10, 2.5, np.inf]], dtype=np.float32), "row 0 has a NaN or infinite"),
    ],
)
def test_bad_tensors_get_invalid_argument_over_grpc(
    served: Served, features: np.ndarray, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        grpc_infer(served, features)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")


def test_repository_load_of_the_current_champion_is_a_no_op(served: Served) -> None:
    name = served.settings.model_name
    response = httpx.post(f"{served.rest}/v2/repository/models/{name}/load", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"name": name, "load": True}
    assert httpx.get(f"{served.rest}/v2/models/{name}", timeout=5).json()["versions"] == ["1"]


def test_unknown_model_is_404(served: Served) -> None:
    response = httpx.post(f"{served.rest}/v2/repository/models/nope/load", timeout=5)
    assert response.status_code == 404


def test_grpc_repository_model_load_reloads(served: Served) -> None:
    async def call() -> pb.RepositoryModelLoadResponse:
        async with grpc.aio.insecure_channel(served.grpc) as channel:
            stub = GRPCInferenceServiceStub(channel)
            return await stub.RepositoryModelLoad(
                pb.RepositoryModelLoadRequest(model_name=served.settings.model_name), timeout=30
            )

    response = asyncio.run(call())
    assert response.model_name == served.settings.model_name
    assert response.isLoaded
