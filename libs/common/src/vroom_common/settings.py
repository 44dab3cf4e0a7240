"""Configuration shared by every component, read from the environment.

Every port, path and URL of the system is a field here, with its default: each
component finds the others from these. A setting only one component reads lives with
that component, in a subclass (``RolloutSettings``, ``GatewaySettings``,
``PipelineSettings``, the local stack's ``StackSettings``) or, for the materializer, in
its own options. Variables use the ``VROOM_`` prefix; the gateway's historical
``SERVING_`` names (kept for wire compatibility with the Ray Serve version) are
accepted as aliases of the same fields, so each fact still has one definition.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vroom_common.events import STREAM_MAXLEN

#: Placeholder for "derive this path from state_dir".
_UNSET: Final = Path()

#: The registered model name in MLflow, also the model name the predictor serves.
DEFAULT_MODEL_NAME = "vroom-forecast"


def _default_feast_repo() -> Path:
    """The repository's ``feature_repo/`` when running from a checkout (set it in images)."""
    # libs/common/src/vroom_common/settings.py -> the repository root is four levels up.
    return Path(__file__).resolve().parents[4] / "feature_repo"


#: Where Kubernetes mounts the namespace of a pod's service account.
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _default_kube_namespace() -> str:
    """The pod's own namespace inside a cluster, else ``default``."""
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def parse_list(value: Any) -> Any:
    """A list variable: JSON (``[10, 50]``) or comma-separated (``10,50``)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _secret_text(value: Any) -> str | list[str] | None:
    """A secret setting's plain text (None for any other): a child process must receive
    the key itself, not its mask."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list) and value and all(isinstance(item, SecretStr) for item in value):
        return [item.get_secret_value() for item in value]
    return None


def _env_value(value: Any) -> str:
    """A setting as its variable reads it: strings as they are, lists of strings
    comma-separated (what the list settings parse, and what supervisord's environment
    lines can quote), anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return json.dumps(value)


def env_alias(name: str) -> AliasChoices:
    """Accept ``VROOM_<NAME>`` and the gateway's legacy ``SERVING_<NAME>``."""
    return AliasChoices(f"VROOM_{name}", f"SERVING_{name}")


class Settings(BaseSettings):
    """What every component reads. Derived URLs and paths fill in from the rest."""

    # Inputs stay out of error messages: one of them may be an API key.
    model_config = SettingsConfigDict(
        env_prefix="VROOM_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    # --- where state lives -------------------------------------------------------------
    state_dir: Path = Field(
        default=Path(".vroom"), description="Root of all local state (databases, stores, logs)."
    )

    # --- ports (every one configurable) ------------------------------------------------
    host: str = Field(
        default="127.0.0.1",
        validation_alias=env_alias("HOST"),
        description="Interface local services bind to (and where they find each other locally).",
    )
    redis_port: int = Field(default=6379, ge=1, le=65535)
    mlflow_port: int = Field(default=5001, ge=1, le=65535)
    gateway_port: int = Field(default=8000, ge=1, le=65535, validation_alias=env_alias("PORT"))
    predictor_http_port: int = Field(default=8080, ge=1, le=65535)
    predictor_grpc_port: int = Field(default=8081, ge=1, le=65535)
    feature_service_port: int = Field(default=8082, ge=1, le=65535)

    # --- service URLs (derived from the ports unless set) --------------------------------
    redis_url: str = Field(default="", validation_alias=env_alias("REDIS_URL"))
    # One policy for every Redis client (vroom_common.redis_clients).
    redis_connect_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Connecting to Redis gives up after this."
    )
    redis_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="A Redis command (besides a blocking read's wait)."
    )
    redis_retries: int = Field(
        default=1, ge=0, le=10, description="Retries of a Redis command that failed to connect."
    )
    mlflow_uri: str = Field(default="", validation_alias=env_alias("MLFLOW_URI"))
    predictor_url: str = Field(
        default="", description="REST base URL of the predictor (default: host + HTTP port)."
    )
    predictor_grpc_target: str = Field(
        default="", description="host:port of the predictor's gRPC server (default: host + port)."
    )
    feature_service_url: str = Field(
        default="", description="Base URL of the feature service (default: host + its port)."
    )

    # --- model registry ------------------------------------------------------------------
    model_name: str = Field(default=DEFAULT_MODEL_NAME, validation_alias=env_alias("MODEL_NAME"))
    mlflow_experiment: str = Field(default=DEFAULT_MODEL_NAME, description="Training runs go here.")

    # --- data ----------------------------------------------------------------------------
    # Empty paths below mean "derive from state_dir" (see _derive).
    db_path: Path = Field(default=_UNSET, validation_alias=env_alias("DB_PATH"))
    database_url: str = Field(
        default="",
        validation_alias=env_alias("DATABASE_URL"),
        description="SQLAlchemy URL; defaults to the SQLite file at db_path.",
    )
    offline_store_path: Path = Field(
        default=_UNSET, validation_alias=env_alias("OFFLINE_STORE_PATH")
    )
    prediction_log_path: Path = Field(
        default=_UNSET,
        validation_alias=env_alias("PREDICTION_LOG_PATH"),
        description="Directory of the prediction log's date-partitioned Parquet files "
        "(default: beside the offline store).",
    )
    feast_repo: Path = Field(
        default_factory=_default_feast_repo, validation_alias=env_alias("FEAST_REPO")
    )
    feast_registry_path: Path = _UNSET

    # --- events --------------------------------------------------------------------------
    stream_maxlen: int = Field(
        default=STREAM_MAXLEN, ge=100, description="Approximate cap on every Redis stream we write."
    )

    # --- cluster ---------------------------------------------------------------------------
    kube_namespace: str = Field(
        default_factory=_default_kube_namespace,
        description="Namespace the rollout and the gateway's Jobs act in (default: the "
        "pod's own, else default).",
    )

    # --- every HTTP server (vroom_common.http) ---------------------------------------------
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies trusted to set X-Forwarded-For (comma-separated IPs/CIDRs, "
        "'*' for any): the client address rate limits are keyed by.",
    )
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection that has not sent a request's headers in this time is closed.",
    )
    http_keepalive_s: int = Field(
        default=5, ge=1, description="Idle keep-alive connections are closed after this."
    )
    http_max_connections: int = Field(
        default=2048, ge=1, description="Concurrent connections per process; more get a 503."
    )

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    #: Fields filled in from others when left empty; a copy re-derives them
    #: (:meth:`with_overrides`). A subclass adding derived fields extends this.
    DERIVED_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "redis_url",
            "mlflow_uri",
            "predictor_url",
            "predictor_grpc_target",
            "feature_service_url",
            "db_path",
            "database_url",
            "offline_store_path",
            "prediction_log_path",
            "feast_registry_path",
        }
    )

    @model_validator(mode="after")
    def _derive(self) -> Self:
        self.state_dir = self.state_dir.expanduser().resolve()
        if not self.redis_url:
            self.redis_url = f"redis://{self.host}:{self.redis_port}/0"
        if not self.mlflow_uri:
            self.mlflow_uri = f"http://{self.host}:{self.mlflow_port}"
        if not self.predictor_url:
            self.predictor_url = f"http://{self.host}:{self.predictor_http_port}"
        if not self.predictor_grpc_target:
            self.predictor_grpc_target = f"{self.host}:{self.predictor_grpc_port}"
        if not self.feature_service_url:
            self.feature_service_url = f"http://{self.host}:{self.feature_service_port}"
        if self.db_path == _UNSET:
            self.db_path = self.state_dir / "vroom.db"
        if not self.database_url:
            self.database_url = f"sqlite:///{self.db_path}"
        if self.offline_store_path == _UNSET:
            self.offline_store_path = self.state_dir / "offline" / "vehicle_features.parquet"
        if self.prediction_log_path == _UNSET:
            self.prediction_log_path = self.offline_store_path.parent / "predictions"
        if self.feast_registry_path == _UNSET:
            self.feast_registry_path = self.state_dir / "feast" / "registry.db"
        return self

    @property
    def redis_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.redis_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379

    @property
    def redis_db(self) -> int:
        path = urlsplit(self.redis_url).path.strip("/")
        return int(path) if path else 0

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable that sets ``field_name`` (its first alias wins)."""
        alias = cls.model_fields[field_name].validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            return alias.choices[0]
        if isinstance(alias, str):
            return alias
        return f"VROOM_{field_name.upper()}"

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Every variable this class reads (each alias) -> the field it sets."""
        names: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(dict.fromkeys((c for c in alias.choices if isinstance(c, str)), name))
            else:
                names[alias if isinstance(alias, str) else f"VROOM_{name.upper()}"] = name
        return names

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables: a child process sees the same ones."""
        data = self.model_dump(mode="json")
        for name in data:
            secret = _secret_text(getattr(self, name))
            if secret is not None:
                data[name] = secret
        return {
            self.env_name(name): _env_value(value)
            for name, value in data.items()
            if value is not None
        }

    def with_overrides(self, **changes: Any) -> Self:
        """A copy with some fields changed and derived fields re-derived.

        Raises:
            TypeError: A change names no field of this class (it would be ignored).
        """
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(sorted(unknown))}")
        data = self.model_dump(exclude=set(self.DERIVED_FIELDS - set(changes)))
        data.update(changes)
        return type(self).model_validate(data)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
