"""The ``kserve.Model``: tensor checks, inference, output checks, reload and unload.

One instance per served model: the champion and, beside it, the rollout candidate.
Requests read the current :class:`LoadedModel` once and use it to the end, so a swap
never affects a request in flight. A reload fetches and checks the new version off
the event loop, then replaces the reference in one assignment. Concurrent reload
requests coalesce: all callers that asked while a load was queued share its result.
An unload drops the version under the same lock, so a reload and an unload never
interleave: whichever comes second decides what is served.

A prediction that is not a count (NaN, infinite, negative) is the model's fault, not an
answer: the request fails with :class:`InvalidPrediction` (REST 500, gRPC INTERNAL)
instead of handing a caller a number it cannot use. The load-time check probes one
known row only, so a model can pass it and still misbehave on other rows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import structlog
from grpc_interceptor.exceptions import Internal
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ModelNotReady

from vroom_common.tracing import span
from vroom_features.contract import (
    INPUT_DATATYPE,
    INPUT_NAME,
    INTERVAL_LEVELS,
    INTERVAL_LOWER_NAME,
    INTERVAL_UPPER_NAME,
    N_FEATURES,
    OUTPUT_NAME,
)
from vroom_predictor.drift import (
    DRIFT_MIN_ROWS,
    DRIFT_WINDOW_ROWS,
    DriftReport,
    DriftWindow,
    report,
)
from vroom_predictor.loading import (
    LoadedModel,
    ModelLoadError,
    ModelSource,
    NoVersion,
    Outputs,
)

log = structlog.get_logger(__name__)

#: Largest batch one request may carry (the gateway sends at most 1,000 rows).
MAX_ROWS = 10_000
#: Batches at least this large run in a worker thread instead of on the event loop.
THREAD_ROWS = 256

OnSwap = Callable[[LoadedModel], Awaitable[None]]


class NotReady(ModelNotReady):  # type: ignore[misc]
    """KServe's ``ModelNotReady`` with the ``reason`` its gRPC interceptor reads.

    KServe 0.21's interceptor aborts with ``ex.reason``, which its own ``ModelNotReady``
    lacks, so a not-ready model surfaced over gRPC as UNKNOWN instead of UNAVAILABLE.
    """

    @property
    def reason(self) -> str:
        return str(self)


class LoadFailed(NotReady):
    """A repository load that failed (REST 503, gRPC UNAVAILABLE, as KServe answers a
    failed load); the message names the cause and what serves meanwhile."""

    def __init__(self, model_name: str, error: Exception, serving: str | None) -> None:
        super().__init__(model_name)
        still = f"v{serving} keeps serving" if serving else "nothing is served"
        self.error_msg = f"cannot load {model_name}: {error} ({still})"


class InvalidPrediction(Internal):
    """A model fault: a prediction that is not a finite, non-negative count.

    REST 500 (a handler :func:`vroom_predictor.server.add_error_handlers` installs) and
    gRPC INTERNAL, with the message. Not KServe's ``InferenceError``: its gRPC
    interceptor answers that with INVALID_ARGUMENT, which would blame the caller; a
    ``grpc_interceptor`` error passes through it with its own status and details.
    """

    def __init__(self, message: str) -> None:
        super().__init__(details=message)

    def __str__(self) -> str:
        return str(self.details)


@dataclass(frozen=True)
class ReloadResult:
    status: Literal["reloaded", "unchanged"]
    previous_version: str | None
    current_version: str | None
    seconds: float


class ReservationModel(Model):  # type: ignore[misc]  # kserve ships no type hints
    """Serves ``predicted_reservations`` for ``features`` ``[N, N_FEATURES]`` (FP32).

    ``optional``: the source having no version (:class:`NoVersion`) is this model's
    normal state (the rollout candidate, between rollouts), logged at info at start-up.
    ``thread_rows``: batches at least this large run in a worker thread; 1 for a model
    that must never hold the event loop (a slow candidate would delay the champion).
    """

    def __init__(
        self,
        name: str,
        source: ModelSource,
        on_swap: OnSwap | None = None,
        *,
        optional: bool = False,
        thread_rows: int = THREAD_ROWS,
        drift_window: int = DRIFT_WINDOW_ROWS,
        drift_min_rows: int = DRIFT_MIN_ROWS,
    ) -> None:
        super().__init__(name)
        self.source = source
        self.optional = optional
        self.thread_rows = thread_rows
        self.drift_window = drift_window
        self.drift_min_rows = drift_min_rows
        self._on_swap = on_swap
        self._current: LoadedModel | None = None
        #: The live rows of the model they were answered by (a new version starts afresh).
        self._window: tuple[LoadedModel | None, DriftWindow] = (None, DriftWindow(1))
        self._lock = asyncio.Lock()
        self._requested = 0  # reload requests made
        self._served = 0  # reload requests covered by a finished load
        self._last: ReloadResult | None = None
        self.last_error: str | None = None
        #: The promotion watcher's task, if one runs; cancelled by :meth:`stop`.
        self.watcher: asyncio.Task[Any] | None = None

    # --- state -------------------------------------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def _swap(self, loaded: LoadedModel) -> None:
        self._window = (loaded, DriftWindow(self.drift_window))
        self._current = loaded
        self.ready = True

    def drift(self) -> DriftReport | None:
        """The served version's live drift; None when nothing is served or the model was
        saved without a reference."""
        owner, window = self._window
        if owner is None or owner is not self._current or owner.reference is None:
            return None
        return report(self.name, owner.version, owner.reference, window, self.drift_min_rows)

    def load(self) -> bool:
        """KServe's hook, also called on the request path while not ready: never fetches.

        Loading happens in :meth:`load_initial` (start-up) and :meth:`reload`.
        """
        return bool(self.ready)

    def stop(self) -> None:
        """KServe's shutdown hook: stop watching promotions."""
        super().stop()
        if self.watcher is not None:
            self.watcher.cancel()

    def load_initial(self) -> bool:
        """Try to load at start-up; not finding a model leaves the server up, not ready."""
        try:
            loaded = self.source.fetch(None)
        except ModelLoadError as exc:
            self.last_error = str(exc)
            if self.optional and isinstance(exc, NoVersion):
                log.info("nothing to serve yet", model=self.name, source=self.source.describe())
            else:
                log.warning(
                    "no model loaded at start-up",
                    model=self.name,
                    source=self.source.describe(),
                    error=str(exc),
                )
            return False
        if loaded is not None:
            self._swap(loaded)
            log.info("model loaded", model=self.name, version=loaded.version, run_id=loaded.run_id)
        return bool(self.ready)

    # --- reload --------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Load the source's current version in the background and swap it in.

        Raises:
            ModelLoadError: the new version could not be fetched or failed its check;
                the previous version keeps serving.
        """
        self._requested += 1
        ticket = self._requested
        async with self._lock:
            if self._served >= ticket and self._last is not None:
                # A load that started after our request covered it (an unload since
                # clears _last: a reload after an unload always loads).
                return self._last
            covers = self._requested
            started = time.perf_counter()
            previous = self._current.version if self._current else None
            try:
                loaded = await asyncio.to_thread(self.source.fetch, previous)
            except ModelLoadError as exc:
                self.last_error = str(exc)
                log.error(
                    "reload failed; previous model keeps serving"
                    if previous
                    else "reload failed; nothing is served",
                    model=self.name,
                    version=previous,
                    error=str(exc),
                )
                raise
            if loaded is None:
                result = ReloadResult(
                    "unchanged", previous, previous, time.perf_counter() - started
                )
            else:
                self._swap(loaded)
                self.last_error = None
                result = ReloadResult(
                    "reloaded", previous, loaded.version, time.perf_counter() - started
                )
                log.info(
                    "model swapped", model=self.name, previous=previous, version=loaded.version
                )
                if self._on_swap is not None:
                    await self._on_swap(loaded)
            self._served = covers
            self._last = result
            return result

    async def unload(self) -> str | None:
        """Stop serving: drop the loaded version (``ready`` turns false, inference answers
        not ready) but stay registered, so a later :meth:`reload` serves again.

        Returns the version dropped (``None``: nothing was loaded). Waits for a reload in
        progress; a reload requested after it loads afresh.
        """
        async with self._lock:
            previous = self._current.version if self._current else None
            self._current = None
            self.ready = False
            self._last = None
            self.last_error = "it was unloaded; load it to serve again"
        log.info("model unloaded", model=self.name, version=previous)
        return previous

    # --- inference -----------------------------------------------------------------------

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": INPUT_NAME, "datatype": INPUT_DATATYPE, "shape": [-1, N_FEATURES]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        outputs = [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1]}]
        model = self._current
        if model is not None and model.has_intervals:
            # One column per level of INTERVAL_LEVELS, in that order.
            outputs += [
                {"name": name, "datatype": "FP32", "shape": [-1, len(INTERVAL_LEVELS)]}
                for name in (INTERVAL_LOWER_NAME, INTERVAL_UPPER_NAME)
            ]
        return outputs

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,  # noqa: ARG002 - KServe's signature
        response_headers: dict[str, str] | None = None,  # noqa: ARG002
    ) -> InferResponse:
        model = self._current  # read once: a concurrent swap cannot change it under us
        if model is None:
            raise NotReady(self.name, self.last_error or "no model has been promoted yet")
        features = features_from(payload)
        with span("inference", model=self.name, version=model.version, rows=len(features)):
            if len(features) >= self.thread_rows:
                result = await asyncio.to_thread(model.predict_with_intervals, features)
            else:
                result = model.predict_with_intervals(features)
        owner, window = self._window
        if owner is model and model.reference is not None:
            window.observe(features, result.point)
        return self._response(payload, model, result)

    def _response(
        self, payload: InferRequest, model: LoadedModel, result: Outputs
    ) -> InferResponse:
        """The predictions as an Open Inference Protocol answer (checked first: a model
        that returns a negative or non-finite count is broken, not a forecast)."""
        predictions = result.point
        if not (np.isfinite(predictions).all() and (predictions >= 0).all()):
            raise self._invalid(model, predictions)
        # Over gRPC each tensor goes out as its raw little-endian bytes
        # (raw_output_contents): a list of Python floats would cost a conversion per value,
        # 9,000 of them for a 1,000-vehicle batch. REST keeps JSON numbers.
        binary = bool(payload.from_grpc)
        with span("serialization", rows=len(predictions)):
            output = InferOutput(name=OUTPUT_NAME, shape=[len(predictions)], datatype="FP32")
            output.set_data_from_numpy(predictions, binary_data=binary)
            outputs = [output]
            for name, bounds in (
                (INTERVAL_LOWER_NAME, result.lower),
                (INTERVAL_UPPER_NAME, result.upper),
            ):
                if bounds is not None:
                    tensor = InferOutput(name=name, shape=list(bounds.shape), datatype="FP32")
                    tensor.set_data_from_numpy(bounds, binary_data=binary)
                    outputs.append(tensor)
            return InferResponse(
                response_id=payload.id or str(uuid.uuid4()),
                model_name=self.name,
                model_version=model.version,
                infer_outputs=outputs,
                parameters={"run_id": model.run_id or ""},
            )

    def _invalid(self, model: LoadedModel, predictions: np.ndarray) -> InvalidPrediction:
        row = int(np.flatnonzero(~(np.isfinite(predictions) & (predictions >= 0)))[0])
        message = (
            f"model {self.name} v{model.version} produced an invalid prediction at row "
            f"{row}: {float(predictions[row])} (a count must be finite and >= 0)"
        )
        log.error("invalid prediction", model=self.name, version=model.version, error=message)
        return InvalidPrediction(message)


def features_from(payload: InferRequest) -> np.ndarray:
    """The request's feature tensor, checked against the contract.

    Raises:
        InvalidInput: wrong tensor name, datatype or shape, data that does not fill
            the shape, or a NaN/infinite value — the message names the rule broken.
    """
    if not isinstance(payload, InferRequest):
        raise InvalidInput("expected an Open Inference Protocol v2 request")
    names = [i.name for i in payload.inputs]
    if names != [INPUT_NAME]:
        raise InvalidInput(f"expected exactly one input tensor {INPUT_NAME!r}, got {names}")
    tensor = payload.inputs[0]
    if tensor.datatype != INPUT_DATATYPE:
        raise InvalidInput(
            f"input {INPUT_NAME!r}: datatype must be {INPUT_DATATYPE}, got {tensor.datatype}"
        )
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != N_FEATURES or not 1 <= shape[0] <= MAX_ROWS:
        raise InvalidInput(
            f"input {INPUT_NAME!r}: shape must be [N, {N_FEATURES}] with 1 <= N <= {MAX_ROWS}, "
            f"got {shape}"
        )
    try:
        features = np.ascontiguousarray(tensor.as_numpy(), dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"input {INPUT_NAME!r}: data does not fill shape {shape}: {exc}"
        ) from exc
    if not np.isfinite(features).all():
        row = int(np.argwhere(~np.isfinite(features))[0][0])
        raise InvalidInput(f"input {INPUT_NAME!r}: row {row} has a NaN or infinite value")
    return features
