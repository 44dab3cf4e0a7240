"""The rollout candidate beside the champion on a running predictor: load, unload,
metadata, a missing alias, and a model whose predictions are not counts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from mlflow.tracking import MlflowClient

from tests.predictor.conftest import Served
from tests.predictor.faulty import Fault, faulty_model_dir
from tests.predictor.test_server import grpc_infer
from vroom_cli.stack.services import log_dir
from vroom_features.contract import INPUT_NAME, N_FEATURES, OUTPUT_NAME
from vroom_predictor.loading import PROBE_ROW
from vroom_registry import ALIAS_ROLLOUT, candidate_name

pytestmark = pytest.mark.integration

#: The load-time probe's row (every model here answers it) and one that differs from it
#: in ``description`` only (the faulty models answer it with a fault).
PROBE = PROBE_ROW[0].tolist()
OFF_PROBE = [*PROBE[:3], PROBE[3] + 10, *PROBE[4:]]


def names(served: Served) -> tuple[str, str]:
    """The champion's and the candidate's served names."""
    return served.settings.model_name, candidate_name(served.settings.model_name)


def set_rollout(served: Served, version: str) -> None:
    client = MlflowClient(served.settings.mlflow_uri)
    client.set_registered_model_alias(served.settings.model_name, ALIAS_ROLLOUT, version)


def repository(served: Served, name: str, verb: str) -> httpx.Response:
    return httpx.post(f"{served.rest}/v2/repository/models/{name}/{verb}", timeout=30)


def grpc_repository(served: Served, name: str, verb: str) -> Any:
    async def call() -> Any:
        async with grpc.aio.insecure_channel(served.grpc) as channel:
            stub = GRPCInferenceServiceStub(channel)
            if verb == "load":
                return await stub.RepositoryModelLoad(
                    pb.RepositoryModelLoadRequest(model_name=name), timeout=30
                )
            return await stub.RepositoryModelUnload(
                pb.RepositoryModelUnloadRequest(model_name=name), timeout=30
            )

    return asyncio.run(call())


def metadata(served: Served, name: str) -> httpx.Response:
    return httpx.get(f"{served.rest}/v2/models/{name}", timeout=5)


def rest_infer(served: Served, name: str, row: list[float]) -> httpx.Response:
    body = {
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [1, N_FEATURES], "data": row}]
    }
    return httpx.post(f"{served.rest}/v2/models/{name}/infer", json=body, timeout=10)


def grpc_version(served: Served, name: str) -> str:
    response = grpc_infer(served, np.array([PROBE], dtype=np.float32), model_name=name)
    assert response.outputs[0].name == OUTPUT_NAME
    assert np.isfinite(response.outputs[0].as_numpy()).all()
    return str(response.model_version)


def assert_not_ready_over_grpc(served: Served, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        grpc_infer(served, np.array([PROBE], dtype=np.float32), model_name=name)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not ready" in (caught.value.details() or "")


@pytest.fixture(scope="module")
def candidate_version(served: Served) -> str:
    """A second registered version (a copy of the champion's model), not yet aliased."""
    return served.register_version()


def test_at_start_up_the_candidate_is_registered_quietly_not_ready(served: Served) -> None:
    _champion, candidate = names(served)
    # No rollout alias is the candidate's normal state: one info line, no warning. (Read
    # first: KServe logs the 503s below with a traceback.)
    lines = (log_dir(served.settings) / "predictor.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    about = [r for r in records if r.get("model") == candidate]
    assert [(r["event"], r["level"]) for r in about] == [("nothing to serve yet", "info")]
    assert not [r for r in records if r.get("level") in ("warning", "error")]

    assert httpx.get(f"{served.rest}/v2/models/{candidate}/ready", timeout=5).status_code == 503
    meta = metadata(served, candidate)
    assert meta.status_code == 200, meta.text
    assert meta.json()["versions"] == []
    assert meta.json()["inputs"] == [
        {"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, N_FEATURES]}
    ]
    listed = httpx.get(f"{served.rest}/v2/models", timeout=5).json()["models"]
    assert set(listed) == set(names(served))


def test_the_candidate_serves_beside_the_champion(served: Served, candidate_version: str) -> None:
    champion, candidate = names(served)
    set_rollout(served, candidate_version)
    response = repository(served, candidate, "load")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": candidate, "load": True}

    assert grpc_version(served, champion) == "1"
    assert grpc_version(served, candidate) == candidate_version
    assert metadata(served, candidate).json()["versions"] == [candidate_version]
    assert metadata(served, champion).json()["versions"] == ["1"]
    infer = rest_infer(served, candidate, PROBE)
    assert infer.status_code == 200, infer.text
    assert infer.json()["model_version"] == candidate_version


def test_unload_over_rest_and_grpc_and_load_again(served: Served, candidate_version: str) -> None:
    champion, candidate = names(served)
    set_rollout(served, candidate_version)
    assert repository(served, candidate, "load").status_code == 200

    response = repository(served, candidate, "unload")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": candidate, "unload": True}
    assert_not_ready_over_grpc(served, candidate)
    assert rest_infer(served, candidate, PROBE).status_code == 503
    meta = metadata(served, candidate)
    assert meta.status_code == 200
    assert meta.json()["versions"] == []
    assert grpc_version(served, champion) == "1"  # the champion is not affected
    assert repository(served, candidate, "unload").status_code == 200  # idempotent

    assert repository(served, candidate, "load").status_code == 200
    assert grpc_version(served, candidate) == candidate_version

    unloaded = grpc_repository(served, candidate, "unload")
    assert unloaded.model_name == candidate
    assert unloaded.isUnloaded
    assert_not_ready_over_grpc(served, candidate)
    assert grpc_version(served, champion) == "1"

    loaded = grpc_repository(served, candidate, "load")
    assert loaded.model_name == candidate
    assert loaded.isLoaded
    assert grpc_version(served, candidate) == candidate_version
    assert metadata(served, candidate).json()["versions"] == [candidate_version]


@pytest.mark.parametrize("verb", ["load", "unload"])
def test_load_and_unload_of_an_unknown_model_are_not_found(served: Served, verb: str) -> None:
    assert repository(served, "nope", verb).status_code == 404
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        grpc_repository(served, "nope", verb)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_loading_a_candidate_without_a_rollout_alias_fails_and_says_why(
    served: Served, candidate_version: str
) -> None:
    champion, candidate = names(served)
    set_rollout(served, candidate_version)
    assert repository(served, candidate, "load").status_code == 200
    MlflowClient(served.settings.mlflow_uri).delete_registered_model_alias(champion, ALIAS_ROLLOUT)

    # A loaded candidate keeps serving after a failed load, as the champion does ...
    response = repository(served, candidate, "load")
    assert response.status_code == 503
    error = response.json()["error"]
    source = f"models:/{champion}@{ALIAS_ROLLOUT}"
    assert f"{source}: model '{champion}' has no '{ALIAS_ROLLOUT}' version" in error
    assert f"v{candidate_version} keeps serving" in error
    assert grpc_version(served, candidate) == candidate_version

    # ... and an unloaded one stays unloaded.
    assert repository(served, candidate, "unload").status_code == 200
    response = repository(served, candidate, "load")
    assert response.status_code == 503
    assert "nothing is served" in response.json()["error"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        grpc_repository(served, candidate, "load")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"@{ALIAS_ROLLOUT}" in (caught.value.details() or "")
    assert_not_ready_over_grpc(served, candidate)
    assert grpc_version(served, champion) == "1"


@pytest.mark.parametrize(("fault", "value"), [("nan", "nan"), ("negative", "-100.0")])
def test_a_prediction_that_is_not_a_count_is_internal_naming_model_version_and_row(
    served: Served, tmp_path: Path, fault: Fault, value: str
) -> None:
    champion, candidate = names(served)
    version = served.register_version(faulty_model_dir(tmp_path / fault, fault, served.model_dir))
    set_rollout(served, version)
    assert repository(served, candidate, "load").status_code == 200  # the probe passes

    expected = (
        f"model {candidate} v{version} produced an invalid prediction at row 1: {value} "
        "(a count must be finite and >= 0)"
    )
    rows = np.array([PROBE, OFF_PROBE], dtype=np.float32)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        grpc_infer(served, rows, model_name=candidate)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == expected
    response = rest_infer(served, candidate, OFF_PROBE)
    assert response.status_code == 500
    assert response.json() == {"error": expected.replace("row 1", "row 0")}

    # The probe row itself is answered, and the champion is not affected.
    assert grpc_version(served, candidate) == version
    assert grpc_version(served, champion) == "1"
    assert rest_infer(served, champion, OFF_PROBE).status_code == 200
