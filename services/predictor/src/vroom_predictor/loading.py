"""Fetch a model version, build its ONNX Runtime session, and check it.

Two sources: a directory (what KServe's storage initializer mounts at
``/mnt/models`` on a cluster) and the MLflow registry, locally: an alias of the
registered model, ``champion`` for the model that serves and ``rollout`` for the
candidate a progressive rollout tests beside it. Either way the result is a
:class:`LoadedModel`, immutable, which the model server swaps in atomically.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import structlog
import yaml

from vroom_common.errors import NotFound, VroomError
from vroom_features.contract import (
    INPUT_NAME,
    INTERVAL_LOWER_NAME,
    INTERVAL_UPPER_NAME,
    N_FEATURES,
    ONNX_FILE,
    OUTPUT_NAME,
    REGISTRATION_FILE,
    first_features,
)
from vroom_features.drift import REFERENCE_FILE, Reference
from vroom_features.transforms import feature_row
from vroom_registry import ModelRegistry

log = structlog.get_logger(__name__)

#: Features of a typical listing, used to check a freshly loaded model before swap-in.
PROBE_ROW = np.array(
    [
        feature_row(
            {
                "technology": 1,
                "actual_price": 65.0,
                "recommended_price": 60.0,
                "num_images": 4,
                "street_parked": 0,
                "description": 120,
            }
        )
    ],
    dtype=np.float32,
)


class ModelLoadError(Exception):
    """A model version could not be fetched, opened or checked; the message says why."""


class NoVersion(ModelLoadError):
    """The source names no version: the alias is not set, or the registered model does
    not exist. The rollout candidate's normal state, not a fault."""


@dataclass(frozen=True)
class LoadedModel:
    """A checked, ready-to-serve model version."""

    version: str
    run_id: str | None
    source: str
    session: ort.InferenceSession
    #: The training distributions (drift monitoring); None for a model saved without.
    reference: Reference | None = None

    @cached_property
    def width(self) -> int:
        """Columns the graph takes: ``N_FEATURES``, or fewer for a model trained before
        the feature list grew (it gets the first ones). Read once per loaded model."""
        return len(first_features(self.session.get_inputs()[0].shape[-1]))

    def _feed(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's input from the ``[N, N_FEATURES]`` request tensor."""
        if self.width == N_FEATURES:
            return {INPUT_NAME: features}
        return {INPUT_NAME: np.ascontiguousarray(features[:, : self.width])}

    @cached_property
    def has_intervals(self) -> bool:
        """The graph has the interval outputs (models trained before them do not).
        Read once per loaded model, not per request."""
        names = {output.name for output in self.session.get_outputs()}
        return {INTERVAL_LOWER_NAME, INTERVAL_UPPER_NAME} <= names

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted reservations, shape ``[N]``, for float32 features ``[N, N_FEATURES]``."""
        out = self.session.run([OUTPUT_NAME], self._feed(features))[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def predict_with_intervals(self, features: np.ndarray) -> Outputs:
        """The point predictions ``[N]`` and, when the model has them, the interval
        bounds ``[N, len(INTERVAL_LEVELS)]``: one run of the graph."""
        if not self.has_intervals:
            return Outputs(self.predict(features), None, None)
        point, lower, upper = self.session.run(
            [OUTPUT_NAME, INTERVAL_LOWER_NAME, INTERVAL_UPPER_NAME], self._feed(features)
        )
        return Outputs(
            np.asarray(point, dtype=np.float32).reshape(-1),
            np.asarray(lower, dtype=np.float32),
            np.asarray(upper, dtype=np.float32),
        )


@dataclass(frozen=True)
class Outputs:
    """What one inference gives: points ``[N]``, bounds ``[N, levels]`` or None."""

    point: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None


def open_session(onnx_path: Path) -> ort.InferenceSession:
    """An ONNX Runtime session tuned for small requests: one thread, no spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def load_dir(path: Path, version: str | None = None, run_id: str | None = None) -> LoadedModel:
    """Open and check the model in ``path`` (an MLflow model directory with ``model.onnx``).

    The version comes from ``version`` when given, else from the directory's
    registration file; the run id from ``run_id`` or the ``MLmodel`` file.
    """
    onnx_path = path / ONNX_FILE
    if not onnx_path.is_file():
        raise ModelLoadError(f"{path} has no {ONNX_FILE}")
    if version is None:
        registration = path / REGISTRATION_FILE
        if registration.is_file():
            version = str(json.loads(registration.read_text())["version"])
    if run_id is None and (path / "MLmodel").is_file():
        run_id = yaml.safe_load((path / "MLmodel").read_text()).get("run_id")
    try:
        session = open_session(onnx_path)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"{onnx_path} is not a loadable ONNX model: {exc}") from exc
    loaded = LoadedModel(version or "unknown", run_id, str(path), session, _reference(path))
    check(loaded)
    return loaded


def _reference(path: Path) -> Reference | None:
    """The directory's drift reference; a model without one (or with a broken one) is
    served all the same, unmonitored."""
    file = path / REFERENCE_FILE
    if not file.is_file():
        return None
    try:
        return Reference.load(file)
    except ValueError as exc:
        log.warning("drift reference unreadable; the model is not monitored", error=str(exc))
        return None


def check(loaded: LoadedModel) -> None:
    """The model takes the contract's tensor (or its first columns) and gives a sane
    prediction for a known row."""
    inputs = loaded.session.get_inputs()
    if [i.name for i in inputs] != [INPUT_NAME]:
        found = [(i.name, i.shape) for i in inputs]
        raise ModelLoadError(f"model inputs {found} are not the one input {INPUT_NAME!r}")
    try:
        _ = loaded.width  # checked (and cached) before the model serves
    except ValueError as exc:
        raise ModelLoadError(f"model input {INPUT_NAME!r}: {exc}") from exc
    try:
        # Through every output the graph has (caches has_intervals before serving).
        prediction = loaded.predict_with_intervals(PROBE_ROW).point
    except Exception as exc:
        raise ModelLoadError(f"probe prediction failed: {exc}") from exc
    if prediction.shape != (1,) or not np.isfinite(prediction).all() or prediction[0] < 0:
        raise ModelLoadError(f"probe prediction is not a count: {prediction!r}")


class ModelSource(Protocol):
    """Where model versions come from."""

    def describe(self) -> str: ...

    def fetch(self, current: str | None) -> LoadedModel | None:
        """The source's model, or ``None`` when it is version ``current`` already."""
        ...


@dataclass(frozen=True)
class DirectorySource:
    """A fixed directory: the cluster case, where a new version means a new pod."""

    path: Path

    def describe(self) -> str:
        return str(self.path)

    def fetch(self, current: str | None) -> LoadedModel | None:
        loaded = load_dir(self.path)
        return None if loaded.version == current else loaded


@dataclass(frozen=True)
class RegistrySource:
    """An MLflow registry alias (``champion``, or ``rollout`` for the candidate): the
    local case, reloaded on demand (and on promotion, for the champion).

    Versions are cached as ``cache_dir/<version>``. Reloads of one model are serialized
    (by the model's lock) but two models downloading the same version at once would
    share the staging directory: give each model its own ``cache_dir``.
    """

    tracking_uri: str
    model_name: str
    alias: str
    cache_dir: Path

    def describe(self) -> str:
        return f"models:/{self.model_name}@{self.alias} ({self.tracking_uri})"

    def fetch(self, current: str | None) -> LoadedModel | None:
        models = ModelRegistry(self.tracking_uri, self.model_name)
        try:
            version = models.get(self.alias)
        except NotFound as exc:
            raise NoVersion(f"models:/{self.model_name}@{self.alias}: {exc.message}") from exc
        except VroomError as exc:
            raise ModelLoadError(
                f"cannot resolve models:/{self.model_name}@{self.alias}: {exc.message}"
            ) from exc
        if version.version == current:
            return None
        target = self.cache_dir / version.version
        if not (target / ONNX_FILE).is_file():
            staging = self.cache_dir / f".{version.version}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            try:
                fetched = models.download(version, staging)
            except VroomError as exc:
                raise ModelLoadError(f"cannot download v{version.version}: {exc.message}") from exc
            shutil.rmtree(target, ignore_errors=True)
            fetched.replace(target)  # a half-downloaded version is never used
            shutil.rmtree(staging, ignore_errors=True)
        return load_dir(target, version=version.version, run_id=version.run_id)
