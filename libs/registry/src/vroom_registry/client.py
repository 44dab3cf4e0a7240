"""The one way to talk to the MLflow model registry.

Every component that reads or moves an alias, reads a version's run or downloads its
model goes through :class:`ModelRegistry`, so each situation has one outcome:

- **no such version** (the alias is not set, the model is not registered, the version
  number does not exist): :meth:`ModelRegistry.find` answers ``None``, the other
  lookups raise ``NotFound`` naming the model and the alias or version. Deleting a
  version in MLflow deletes the aliases that pointed at it, so an alias left behind by a
  deleted version is this case too;
- **a version whose training run is deleted** (its artifacts may already be collected):
  ``NotFound`` naming the alias, the version and the run, from every lookup, never a
  model that fails half-way through a download;
- **MLflow down or failing**: ``DependencyUnavailable("mlflow", ...)`` within the health
  check's timeout. MLflow's own client retries for minutes against a server that does
  not answer, so each operation asks ``/health`` first.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import httpx
from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vroom_common.errors import DependencyUnavailable, NotFound

#: The dependency name in errors and logs.
MLFLOW: Final = "mlflow"
#: MLflow's error codes for a model, alias, version or run that does not exist.
MISSING_CODES: Final = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
#: How long the health pre-check waits: a registry that does not answer in this time is
#: down as far as a request path or a rollout step is concerned.
HEALTH_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True)
class Version:
    """A registered model version."""

    model_name: str
    version: str
    run_id: str | None


@dataclass(frozen=True)
class RunInfo:
    """What training logged in a version's run."""

    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None


class ModelRegistry:
    """The registered model ``model_name`` on the tracking server ``tracking_uri``."""

    def __init__(
        self, tracking_uri: str, model_name: str, *, health_timeout_s: float = HEALTH_TIMEOUT_S
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.health_timeout_s = health_timeout_s

    @cached_property
    def client(self) -> MlflowClient:
        """MLflow's client, for what only training does (creating runs, logging
        artifacts); call :meth:`check` first."""
        return MlflowClient(self.tracking_uri)

    # --- errors, mapped once ------------------------------------------------------------------

    def _unavailable(self, what: str, exc: MlflowException) -> DependencyUnavailable:
        return DependencyUnavailable(MLFLOW, f"{self.tracking_uri}: {what}: {exc.message}")

    @contextmanager
    def _calling(self, what: str, missing: str | None = None) -> Iterator[None]:
        """Map MLflow's errors: ``missing`` (when given) becomes ``NotFound``, the rest
        ``DependencyUnavailable`` naming ``what`` was being done."""
        try:
            yield
        except MlflowException as exc:
            if missing is not None and exc.error_code in MISSING_CODES:
                raise NotFound(missing) from exc
            raise self._unavailable(what, exc) from exc

    def check(self) -> None:
        """Raise ``DependencyUnavailable`` unless the tracking server answers its health
        check (nothing to check for a local store such as ``sqlite:`` or a path)."""
        if urlsplit(self.tracking_uri).scheme not in ("http", "https"):
            return
        try:
            response = httpx.get(
                f"{self.tracking_uri.rstrip('/')}/health", timeout=self.health_timeout_s
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(MLFLOW, f"{self.tracking_uri}: {exc}") from exc

    def preload_plugins(self) -> None:
        """Load MLflow's request-header plugins now rather than on the first request.

        Feast registers one, so the first request of a process would import all of
        Feast: seconds of CPU (15 s on a loaded machine), more than a rollout request
        waits for its answer.
        """
        importlib.import_module("mlflow.tracking.request_header.registry")

    # --- lookups ------------------------------------------------------------------------------

    def _version(self, found: ModelVersion, named: str) -> Version:
        version = Version(self.model_name, str(found.version), found.run_id or None)
        if version.run_id is not None:
            try:
                stage = self.client.get_run(version.run_id).info.lifecycle_stage
            except MlflowException as exc:
                if exc.error_code not in MISSING_CODES:
                    raise self._unavailable(f"run {version.run_id}", exc) from exc
                stage = "deleted"
            if stage == "deleted":
                raise NotFound(
                    f"{named} of model {self.model_name!r} is v{version.version}, whose "
                    f"training run {version.run_id} is deleted: point the alias at "
                    "another version"
                )
        return version

    def find(self, alias: str) -> Version | None:
        """The version ``alias`` points at; ``None`` when it points nowhere."""
        self.check()
        try:
            found = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException as exc:
            if exc.error_code in MISSING_CODES:
                return None
            raise self._unavailable(f"alias {alias!r}", exc) from exc
        return self._version(found, f"alias {alias!r}")

    def get(self, alias: str, hint: str = "") -> Version:
        """The version ``alias`` points at; ``NotFound`` (with ``hint``) when none."""
        found = self.find(alias)
        if found is None:
            raise NotFound(
                f"model {self.model_name!r} has no {alias!r} version"
                + (f": {hint}" if hint else "")
            )
        return found

    def version(self, number: str) -> Version:
        """Version ``number``; ``NotFound`` when the model has no such version."""
        self.check()
        missing = f"model {self.model_name!r} has no version {number}"
        with self._calling(f"version {number}", missing=missing):
            found = self.client.get_model_version(self.model_name, number)
        return self._version(found, f"version {number}")

    def run(self, version: Version) -> RunInfo:
        """The metrics and params of ``version``'s training run."""
        if version.run_id is None:
            raise NotFound(f"v{version.version} was registered without a training run")
        self.check()
        missing = f"run {version.run_id} of v{version.version} does not exist"
        with self._calling(f"run {version.run_id}", missing=missing):
            run = self.client.get_run(version.run_id)
        started = run.info.start_time
        return RunInfo(
            run_id=version.run_id,
            metrics={k: float(v) for k, v in run.data.metrics.items()},
            params={k: str(v) for k, v in run.data.params.items()},
            started_at=datetime.fromtimestamp(started / 1000, tz=UTC) if started else None,
        )

    def download_uri(self, version: Version) -> str:
        """Where ``version``'s model directory can be downloaded from, as MLflow says."""
        with self._calling(f"download URI of v{version.version}"):
            return str(self.client.get_model_version_download_uri(self.model_name, version.version))

    def download(self, version: Version, destination: Path) -> Path:
        """Download ``version``'s model directory under ``destination``; its path."""
        uri = self.download_uri(version)
        try:
            with self._calling(f"download {uri}", missing=f"{uri} does not exist"):
                return Path(
                    download_artifacts(
                        artifact_uri=uri, dst_path=str(destination), tracking_uri=self.tracking_uri
                    )
                )
        except OSError as exc:
            raise DependencyUnavailable(MLFLOW, f"download {uri}: {exc}") from exc

    # --- changes ------------------------------------------------------------------------------

    def register(self, source: str, run_id: str) -> Version:
        """Register ``source`` (a run's model directory) as a new version."""
        self.check()
        try:
            self.client.create_registered_model(self.model_name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise self._unavailable("create the registered model", exc) from exc
        with self._calling("create a model version"):
            found = self.client.create_model_version(self.model_name, source=source, run_id=run_id)
        return Version(self.model_name, str(found.version), run_id)

    def point(self, alias: str, version: str) -> None:
        """Move ``alias`` to ``version``."""
        self.check()
        missing = f"model {self.model_name!r} has no version {version}"
        with self._calling(f"set alias {alias!r}", missing=missing):
            self.client.set_registered_model_alias(self.model_name, alias, version)

    def clear(self, alias: str) -> None:
        """Remove ``alias`` (already gone is fine)."""
        self.check()
        try:
            self.client.delete_registered_model_alias(self.model_name, alias)
        except MlflowException as exc:
            if exc.error_code not in MISSING_CODES:
                raise self._unavailable(f"delete alias {alias!r}", exc) from exc

    def tag(self, version: str, tags: Mapping[str, str]) -> None:
        """Set ``tags`` on ``version`` (MLflow caps a value at 5000 characters)."""
        self.check()
        for key, value in tags.items():
            with self._calling(f"tag v{version} {key}"):
                self.client.set_model_version_tag(self.model_name, version, key, value[:5000])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Add ``metrics`` to run ``run_id`` (step 0, now)."""
        self.check()
        now = int(datetime.now(tz=UTC).timestamp() * 1000)
        with self._calling(f"log metrics to run {run_id}"):
            self.client.log_batch(
                run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()]
            )
