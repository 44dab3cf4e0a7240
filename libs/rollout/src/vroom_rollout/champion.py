"""Which model serves: the champion alias resolved to a location KServe can read.

KServe's storage initializer downloads a model from a physical location (``s3://``,
``gs://``, ``pvc://``, ``https://``, a local path, ...). It cannot read MLflow's own
URIs (``models:/name@alias``, ``runs:/``, ``mlflow-artifacts:/``), so the alias is
resolved to the version's download location and mapped through ``storage_uri_map``:
prefix pairs from the MLflow artifact root to the URI the cluster reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vroom_common.errors import DependencyUnavailable, InvalidInput, NotFound
from vroom_common.registry import ALIAS_CHAMPION
from vroom_common.settings import Settings

#: URI schemes KServe's storage initializer (or its PVC / modelcar handling) reads.
KSERVE_SCHEMES: Final = frozenset(
    {"s3", "gs", "pvc", "http", "https", "hdfs", "webhdfs", "hf", "oci", "file"}
)
#: MLflow's own schemes: only an MLflow client can resolve these.
MLFLOW_SCHEMES: Final = frozenset({"models", "runs", "mlflow-artifacts", "dbfs"})
#: The setting (and its variable) that maps artifact URIs to cluster-readable ones.
MAP_SETTING: Final = "storage_uri_map (VROOM_STORAGE_URI_MAP)"


@dataclass(frozen=True)
class ChampionRef:
    """The champion version and where its model directory lives."""

    model_name: str
    version: str
    run_id: str | None
    source_uri: str
    """The version's download location, as MLflow reports it."""
    storage_uri: str
    """``source_uri`` mapped to a location KServe's storage initializer can read."""


def _normalise(uri: str) -> str:
    """``mlflow-artifacts://host:port/1/x`` -> ``mlflow-artifacts:/1/x``."""
    parts = urlsplit(uri)
    if parts.scheme == "mlflow-artifacts" and parts.netloc:
        return f"mlflow-artifacts:{parts.path or '/'}"
    return uri


def map_storage_uri(uri: str, mapping: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Rewrite ``uri`` with the longest matching ``from`` prefix; check KServe can read it.

    Raises ``InvalidInput`` naming the URI and the setting when no prefix matches and the
    URI is one KServe cannot read (an MLflow scheme, an unknown scheme, a relative path).
    """
    pairs = list(mapping.items()) if isinstance(mapping, Mapping) else list(mapping)
    # The MLflow server's address in an mlflow-artifacts URI says nothing about storage.
    prefixes = sorted(((_normalise(s), t) for s, t in pairs if s), key=lambda p: -len(p[0]))
    normalised = _normalise(uri)
    for source, target in prefixes:
        if normalised.startswith(source):
            return target + normalised[len(source) :]

    scheme = urlsplit(uri).scheme
    if scheme in KSERVE_SCHEMES or (not scheme and uri.startswith("/")):
        return uri
    if scheme in MLFLOW_SCHEMES:
        why = f"KServe's storage initializer cannot read {scheme}: URIs"
    elif scheme:
        why = f"KServe's storage initializer does not read the scheme {scheme!r}"
    else:
        why = "a relative path is not a location KServe can read"
    example = f'{{"{_artifact_root(uri)}": "s3://<bucket>/<path>/"}}'
    raise InvalidInput(
        f"model artifact URI {uri!r} cannot be served by KServe: {why}; "
        f"set {MAP_SETTING} to map it to a readable location, e.g. {example}"
    )


def _artifact_root(uri: str) -> str:
    scheme = urlsplit(uri).scheme
    return f"{scheme}:/" if scheme else uri.split("/", 1)[0] + "/"


def check_mlflow(settings: Settings) -> None:
    """Fail fast (MLflow's client retries for minutes against a server that is down)."""
    if urlsplit(settings.mlflow_uri).scheme not in ("http", "https"):
        return
    try:
        httpx.get(f"{settings.mlflow_uri}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise DependencyUnavailable("mlflow", f"{settings.mlflow_uri}: {exc}") from exc


def resolve_champion(settings: Settings) -> ChampionRef:
    """The current champion of ``settings.model_name`` and its cluster-readable location."""
    check_mlflow(settings)
    client = MlflowClient(settings.mlflow_uri)
    name = settings.model_name
    try:
        version = client.get_model_version_by_alias(name, ALIAS_CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NotFound(
                f"model {name!r} has no {ALIAS_CHAMPION!r} version: promote one first "
                "(`vroom promote`)"
            ) from exc
        raise DependencyUnavailable("mlflow", f"{settings.mlflow_uri}: {exc.message}") from exc
    return _located(settings, client, version)


def resolve_version(settings: Settings, version: str) -> ChampionRef:
    """Version ``version`` of ``settings.model_name`` and its cluster-readable location
    (a rollout candidate, which no alias names yet)."""
    check_mlflow(settings)
    client = MlflowClient(settings.mlflow_uri)
    try:
        found = client.get_model_version(settings.model_name, version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise NotFound(f"model {settings.model_name!r} has no version {version}") from exc
        raise DependencyUnavailable("mlflow", f"{settings.mlflow_uri}: {exc.message}") from exc
    return _located(settings, client, found)


def _located(settings: Settings, client: MlflowClient, version: ModelVersion) -> ChampionRef:
    name = settings.model_name
    number = str(version.version)
    try:
        source = str(client.get_model_version_download_uri(name, number))
    except MlflowException as exc:
        raise DependencyUnavailable(
            "mlflow", f"no download URI for {name} v{number}: {exc.message}"
        ) from exc
    return ChampionRef(
        model_name=name,
        version=number,
        run_id=str(version.run_id) if version.run_id else None,
        source_uri=source,
        storage_uri=map_storage_uri(source, settings.storage_uri_map),
    )
