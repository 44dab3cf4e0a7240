"""An async client of the predictor: Open Inference Protocol v2 over gRPC.

One ``grpc.aio`` channel per client, opened by the app's lifespan and closed at
shutdown; every call has a deadline. Only ``UNAVAILABLE`` is retried (once, after a
short pause) — except the predictor's "model not ready", which no retry can fix.
gRPC failures become errors by meaning: ``ModelNotReady``, ``DependencyUnavailable``
(unreachable, deadline exceeded) or ``InvalidInput``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
import numpy as np
import numpy.typing as npt
import structlog
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from vroom_common.errors import DependencyUnavailable, InvalidInput, ModelNotReady, VroomError
from vroom_common.observability import REQUEST_ID_METADATA, current_request_id
from vroom_features import FEATURE_NAMES
from vroom_features.contract import (
    INPUT_DATATYPE,
    INPUT_NAME,
    INTERVAL_LEVELS,
    INTERVAL_LOWER_NAME,
    INTERVAL_UPPER_NAME,
    N_FEATURES,
    OUTPUT_NAME,
)
from vroom_features.prediction_log import Role

#: The interval outputs, lower then upper.
INTERVAL_OUTPUTS = (INTERVAL_LOWER_NAME, INTERVAL_UPPER_NAME)

log = structlog.get_logger(__name__)

#: The dependency name in error messages.
PREDICTOR: Final = "predictor"
#: Default deadline of one gRPC call.
DEFAULT_TIMEOUT_S: Final = 2.0
#: Attempts of a call that fails with UNAVAILABLE (the first included).
MAX_ATTEMPTS: Final = 2
#: Pause before the retry.
RETRY_BACKOFF_S: Final = 0.05

_NOT_READY_WHY: Final = "no model has been promoted yet, or it is still loading"

FloatMatrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Prediction:
    """The predictor's answer: one value per input row and the version that computed it;
    with a model that has them, the interval bounds per row, one column per level of
    ``INTERVAL_LEVELS``. ``role``: which arm of a rollout answered (set by the gateway's
    traffic routing)."""

    values: list[float]
    model_version: str
    run_id: str
    lower: FloatMatrix | None = None
    upper: FloatMatrix | None = None
    role: Role = "champion"

    def interval(self, level: float) -> tuple[FloatMatrix, FloatMatrix] | None:
        """The lower and upper bounds per row at ``level`` (one of ``INTERVAL_LEVELS``);
        None for a model without intervals."""
        if self.lower is None or self.upper is None:
            return None
        column = INTERVAL_LEVELS.index(level)
        return self.lower[:, column], self.upper[:, column]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMetadata:
    """v2 model metadata. Over gRPC KServe 0.21 leaves ``versions`` empty."""

    name: str
    platform: str
    versions: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


def _is_not_ready(error: grpc.aio.AioRpcError) -> bool:
    """The predictor is up but its model is not loaded: UNAVAILABLE saying "not ready"."""
    details = error.details() or ""
    return error.code() == grpc.StatusCode.UNAVAILABLE and "not ready" in details.lower()


class PredictorClient:
    """The predictor at ``target`` (``host:port``), serving ``model_name``."""

    def __init__(
        self, target: str, model_name: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.target = target
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: GRPCInferenceServiceStub | None = None

    async def open(self) -> None:
        """Open the channel (inside the running event loop). Connects lazily."""
        self._channel = grpc.aio.insecure_channel(self.target)
        self._stub = GRPCInferenceServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stub = None

    @property
    def stub(self) -> GRPCInferenceServiceStub:
        if self._stub is None:
            raise DependencyUnavailable(PREDICTOR, "the gRPC channel is not open")
        return self._stub

    def _error(self, error: grpc.aio.AioRpcError) -> VroomError:
        code, details = error.code(), error.details() or ""
        if _is_not_ready(error):
            why = details if "not ready" in details.lower() else _NOT_READY_WHY
            return ModelNotReady(f"model {self.model_name!r} is not ready: {why}")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidInput(f"the predictor refused the input: {details}")
        if code == grpc.StatusCode.NOT_FOUND:
            return ModelNotReady(f"the predictor does not serve {self.model_name!r}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return DependencyUnavailable(
                PREDICTOR, f"{self.target}: no answer within {self.timeout_s:g} s"
            )
        return DependencyUnavailable(PREDICTOR, f"{self.target}: {code.name} {details}".strip())

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        request_id = current_request_id()
        metadata = ((REQUEST_ID_METADATA, request_id),) if request_id else None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response: pb.ModelInferResponse = await self.stub.ModelInfer(
                    request, timeout=self.timeout_s, metadata=metadata
                )
                return response
            except grpc.aio.AioRpcError as error:
                retry = (
                    error.code() == grpc.StatusCode.UNAVAILABLE
                    and not _is_not_ready(error)
                    and attempt < MAX_ATTEMPTS
                )
                if not retry:
                    raise self._error(error) from error
                log.info("predictor unavailable, retrying", target=self.target)
                await asyncio.sleep(RETRY_BACKOFF_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, features: FloatMatrix) -> pb.ModelInferRequest:
        if features.ndim != 2 or features.shape[1] != N_FEATURES:
            raise InvalidInput(
                f"features must have shape [N, {N_FEATURES}] ({', '.join(FEATURE_NAMES)}), "
                f"got {list(features.shape)}"
            )
        rows = np.ascontiguousarray(features, dtype="<f4")
        return pb.ModelInferRequest(
            model_name=self.model_name,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name=INPUT_NAME, datatype=INPUT_DATATYPE, shape=list(rows.shape)
                )
            ],
            raw_input_contents=[rows.tobytes()],  # no outputs named: all of them come back
        )

    async def predict(self, features: FloatMatrix) -> Prediction:
        """Predictions for ``features`` (``[N, N_FEATURES]``, in ``FEATURE_NAMES`` order)."""
        response = await self._infer(self._request(features))
        values = self._values(response)
        if len(values) != len(features):
            raise DependencyUnavailable(
                PREDICTOR, f"answered {len(values)} predictions for {len(features)} rows"
            )
        run_id = (
            response.parameters["run_id"].string_param if "run_id" in response.parameters else ""
        )
        lower, upper = (self._tensor(response, name) for name in INTERVAL_OUTPUTS)
        if lower is not None and upper is not None:
            width = len(INTERVAL_LEVELS)
            if lower.shape != (len(values), width) or upper.shape != lower.shape:
                raise DependencyUnavailable(
                    PREDICTOR,
                    f"interval bounds of shape {list(lower.shape)}, not [{len(values)}, {width}]",
                )
        else:
            lower = upper = None
        return Prediction(
            values=values,
            model_version=response.model_version,
            run_id=run_id,
            lower=lower,
            upper=upper,
        )

    @staticmethod
    def _tensor(response: pb.ModelInferResponse, name: str) -> FloatMatrix | None:
        for index, output in enumerate(response.outputs):
            if output.name != name:
                continue
            if index < len(response.raw_output_contents):
                flat = np.frombuffer(response.raw_output_contents[index], dtype="<f4")
            else:
                flat = np.asarray(output.contents.fp32_contents, dtype=np.float32)
            return flat.reshape([int(d) for d in output.shape])
        return None

    def _values(self, response: pb.ModelInferResponse) -> list[float]:
        point = self._tensor(response, OUTPUT_NAME)
        if point is None:
            raise DependencyUnavailable(PREDICTOR, f"the response has no {OUTPUT_NAME!r} output")
        values: list[float] = point.reshape(-1).tolist()
        return values

    async def model_metadata(self) -> ModelMetadata:
        """The served model's v2 metadata (name, platform, tensors)."""
        try:
            meta: pb.ModelMetadataResponse = await self.stub.ModelMetadata(
                pb.ModelMetadataRequest(name=self.model_name), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as error:
            raise self._error(error) from error

        def specs(tensors: list[pb.ModelMetadataResponse.TensorMetadata]) -> list[TensorSpec]:
            return [TensorSpec(t.name, t.datatype, list(t.shape)) for t in tensors]

        return ModelMetadata(
            name=meta.name,
            platform=meta.platform,
            versions=list(meta.versions),
            inputs=specs(list(meta.inputs)),
            outputs=specs(list(meta.outputs)),
        )

    async def is_ready(self) -> bool:
        """Whether the model is loaded. Raises ``DependencyUnavailable`` when unreachable."""
        try:
            response: pb.ModelReadyResponse = await self.stub.ModelReady(
                pb.ModelReadyRequest(name=self.model_name), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as error:
            mapped = self._error(error)
            if isinstance(mapped, ModelNotReady):
                return False
            raise mapped from error
        return bool(response.ready)
