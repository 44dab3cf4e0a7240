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

from vroom_common.errors import InvalidInput
from vroom_registry import ALIAS_CHAMPION, ModelRegistry, Version
from vroom_rollout.settings import RolloutSettings

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


def registry(settings: RolloutSettings) -> ModelRegistry:
    """The registry adapter for ``settings.model_name``."""
    return ModelRegistry(settings.mlflow_uri, settings.model_name)


def resolve_champion(settings: RolloutSettings) -> ChampionRef:
    """The current champion of ``settings.model_name`` and its cluster-readable location."""
    models = registry(settings)
    found = models.get(ALIAS_CHAMPION, "promote one first (`vroom promote`)")
    return _located(settings, models, found)


def resolve_version(settings: RolloutSettings, version: str) -> ChampionRef:
    """Version ``version`` of ``settings.model_name`` and its cluster-readable location
    (a rollout candidate, which no alias names yet)."""
    models = registry(settings)
    return _located(settings, models, models.version(version))


def _located(settings: RolloutSettings, models: ModelRegistry, version: Version) -> ChampionRef:
    source = models.download_uri(version)
    return ChampionRef(
        model_name=version.model_name,
        version=version.version,
        run_id=version.run_id,
        source_uri=source,
        storage_uri=map_storage_uri(source, settings.storage_uri_map),
    )
