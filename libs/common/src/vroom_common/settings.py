"""Configuration: one pydantic-settings class, read from the environment.

Every port, path and URL of the system is a field here, with its default. Variables
use the ``VROOM_`` prefix; the gateway's historical ``SERVING_`` names (kept for
wire compatibility with the Ray Serve version) are accepted as aliases of the same
fields, so each fact still has one definition.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vroom_common.events import STREAM_MAXLEN

#: Placeholder for "derive this path from state_dir".
_UNSET: Final = Path()

#: The registered model name in MLflow, also the model name the predictor serves.
DEFAULT_MODEL_NAME = "vroom-forecast"

#: The local dashboard's dev-server origins, allowed by CORS unless configured otherwise.
DEFAULT_CORS_ORIGINS: Final = ("http://localhost:3000", "http://127.0.0.1:3000")

#: Shortest API key accepted: a key is a random secret, not a password.
MIN_API_KEY_LENGTH: Final = 16


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


def _parse_uri_map(value: Any) -> Any:
    """``{"from": "to"}``, ``["from=to", ...]``, or a string of either (JSON or ``a=b,c=d``)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        value = json.loads(text) if text[0] in "[{" else text.split(",")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        pairs: dict[str, str] = {}
        for item in value:
            source, sep, target = str(item).partition("=")
            if not sep or not source.strip():
                raise ValueError(f"storage_uri_map entry {item!r} is not of the form 'from=to'")
            pairs[source.strip()] = target.strip()
        return pairs
    return value


def check_steps(steps: list[int]) -> list[int]:
    """Canary steps: at least one, each a share of 1..99 percent, strictly increasing
    (100 % is the promotion itself, after the last step)."""
    if not steps:
        raise ValueError("rollout steps: give at least one canary share, e.g. 10,50")
    for share in steps:
        if not 1 <= share <= 99:
            raise ValueError(f"rollout steps: {share} is not a share between 1 and 99 percent")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"rollout steps: {steps} must increase strictly")
    return steps


def api_key_problem(key: str) -> str | None:
    """What makes ``key`` unusable as an API key (None when it is fine): too short, or
    holding whitespace or commas (keys are listed comma-separated)."""
    if len(key) < MIN_API_KEY_LENGTH:
        return f"is shorter than {MIN_API_KEY_LENGTH} characters"
    if any(char.isspace() or char == "," or not char.isprintable() for char in key):
        return "may hold no whitespace, commas or unprintable characters"
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


def _env(name: str) -> AliasChoices:
    """Accept ``VROOM_<NAME>`` and the gateway's legacy ``SERVING_<NAME>``."""
    return AliasChoices(f"VROOM_{name}", f"SERVING_{name}")


class Settings(BaseSettings):
    """Settings of the whole local system. Derived URLs and paths fill in from the rest."""

    # Inputs stay out of error messages: one of them may be an API key.
    model_config = SettingsConfigDict(
        env_prefix="VROOM_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    # --- where state lives -------------------------------------------------------------
    state_dir: Path = Field(
        default=Path(".vroom"), description="Root of all local state (databases, stores, logs)."
    )
    supervisor_backoff_s: float = Field(
        default=2.0,
        gt=0,
        description="Local stack: first delay before a service that keeps crashing on start "
        "is started again; it doubles on every further give-up.",
    )
    supervisor_backoff_max_s: float = Field(
        default=60.0, gt=0, description="Local stack: the longest delay between such restarts."
    )

    # --- ports (every one configurable) ------------------------------------------------
    host: str = Field(
        default="127.0.0.1",
        validation_alias=_env("HOST"),
        description="Interface local services bind to (and where they find each other locally).",
    )
    redis_port: int = Field(default=6379, ge=1, le=65535)
    mlflow_port: int = Field(default=5001, ge=1, le=65535)
    gateway_port: int = Field(default=8000, ge=1, le=65535, validation_alias=_env("PORT"))
    predictor_http_port: int = Field(default=8080, ge=1, le=65535)
    predictor_grpc_port: int = Field(default=8081, ge=1, le=65535)
    feature_service_port: int = Field(default=8082, ge=1, le=65535)

    # --- service URLs (derived from the ports unless set) --------------------------------
    redis_url: str = Field(default="", validation_alias=_env("REDIS_URL"))
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
    mlflow_uri: str = Field(default="", validation_alias=_env("MLFLOW_URI"))
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
    model_name: str = Field(default=DEFAULT_MODEL_NAME, validation_alias=_env("MODEL_NAME"))
    mlflow_experiment: str = Field(default=DEFAULT_MODEL_NAME, description="Training runs go here.")
    train_n_jobs: int = Field(default=2, ge=1, description="Processes for cross-validation.")
    promotion_cv_repeats: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Repeats of shuffled 5-fold CV on which a promotion re-scores champion "
        "and candidate side by side.",
    )
    promotion_alpha: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="A candidate is promoted only if its paired per-fold MAE advantage has a "
        "one-sided corrected t-test p-value below this (a progressive rollout then tests "
        "it on live traffic too).",
    )

    # --- data ----------------------------------------------------------------------------
    # Empty paths below mean "derive from state_dir" (see _derive).
    db_path: Path = Field(default=_UNSET, validation_alias=_env("DB_PATH"))
    database_url: str = Field(
        default="",
        validation_alias=_env("DATABASE_URL"),
        description="SQLAlchemy URL; defaults to the SQLite file at db_path.",
    )
    offline_store_path: Path = Field(default=_UNSET, validation_alias=_env("OFFLINE_STORE_PATH"))
    feast_repo: Path = Field(
        default_factory=_default_feast_repo, validation_alias=_env("FEAST_REPO")
    )
    feast_registry_path: Path = _UNSET

    # --- events --------------------------------------------------------------------------
    stream_maxlen: int = Field(
        default=STREAM_MAXLEN, ge=100, description="Approximate cap on every Redis stream we write."
    )

    # --- rollout ---------------------------------------------------------------------------
    rollout_backend: Literal["none", "local", "kubernetes"] = "local"
    kube_namespace: str = Field(
        default_factory=_default_kube_namespace,
        description="Namespace of the InferenceService (default: the pod's own, else default).",
    )
    inference_service_name: str = Field(
        default=DEFAULT_MODEL_NAME, description="The KServe InferenceService the rollout patches."
    )
    storage_uri_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Prefix mapping from MLflow artifact URIs to URIs KServe can read, e.g. "
            '{"mlflow-artifacts:/": "s3://bucket/mlartifacts/"} or ["from=to", ...] '
            "(JSON, or comma-separated from=to pairs, in VROOM_STORAGE_URI_MAP)."
        ),
    )
    rollout_wait_ready: bool = Field(
        default=False, description="Wait until the InferenceService is Ready after a patch."
    )
    rollout_timeout_s: float = Field(
        default=300.0, gt=0, description="Bound on a rollout (predictor reload or Ready wait)."
    )
    local_rollout_follow_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a local rollout after a promotion waits for the predictor to "
        "reload on the model-promoted event by itself before it asks it to (0: ask at once).",
    )

    # --- progressive delivery (docs/rollouts.md) -----------------------------------------
    rollout_strategy: Literal["progressive", "immediate"] = Field(
        default="progressive",
        description="How a promotion reaches users when a champion already serves: shadow "
        "and canary steps gated on live signals, or at once (the first model always goes "
        "live at once).",
    )
    rollout_steps: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [10, 50],
        description="Canary traffic shares (percent, increasing, each 1..99) after shadow; "
        "VROOM_ROLLOUT_STEPS=10,50.",
    )
    rollout_shadow_s: float = Field(
        default=60.0,
        ge=0,
        description="Least time the candidate shadows the champion (0: no shadow phase).",
    )
    rollout_step_s: float = Field(default=60.0, gt=0, description="Least time of a canary step.")
    rollout_min_requests: int = Field(
        default=100, ge=1, description="Candidate requests a step needs before any decision."
    )
    rollout_max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest candidate error rate a step accepts."
    )
    rollout_max_p99_ratio: float = Field(
        default=1.5,
        gt=0,
        description="Candidate p99 latency may be at most this times the champion's "
        "(plus rollout_p99_slack_ms).",
    )
    rollout_p99_slack_ms: float = Field(
        default=10.0,
        ge=0,
        description="Absolute allowance added to the p99 bound, so millisecond noise on a "
        "fast champion is not a breach.",
    )
    rollout_max_disagreement: float = Field(
        default=1.0,
        ge=0,
        description="Highest median |candidate - champion| (reservations) on mirrored requests.",
    )
    rollout_candidate_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="Deadline of a candidate call; past it the champion answers instead.",
    )
    rollout_mirror_max_inflight: int = Field(
        default=32, ge=1, description="Mirrored calls in flight per gateway; more are skipped."
    )
    rollout_lease_ttl_s: float = Field(
        default=5.0,
        gt=0,
        description="A controller that stops renewing loses the lease after this.",
    )
    rollout_tick_s: float = Field(
        default=0.25, gt=0, description="How often the controller looks at a running rollout."
    )
    candidate_predictor_url: str = Field(
        default="",
        description="REST base URL of the candidate's predictor (default: predictor_url, "
        "the local predictor hosts both).",
    )
    candidate_predictor_grpc_target: str = Field(
        default="",
        description="host:port of the candidate's gRPC server (default: "
        "predictor_grpc_target, the local predictor hosts both).",
    )

    # --- pipelines triggered by the gateway ---------------------------------------------------
    pipeline_runner: Literal["local", "kubernetes", "airflow"] = Field(
        default="local",
        description="How /materialize and /train run the pipelines: a local background "
        "process, a Job from the chart's CronJob template, or an Airflow DAG run "
        "(chosen whenever airflow_url is set).",
    )
    airflow_url: str = Field(
        default="",
        validation_alias=_env("AIRFLOW_URL"),
        description="Base URL of Airflow's REST API; when set, pipelines run as its DAGs.",
    )
    airflow_username: str = ""
    airflow_password: str = ""
    kube_materialize_cronjob: str = Field(
        default=f"{DEFAULT_MODEL_NAME}-materialize",
        description="The suspended CronJob whose jobTemplate runs the materialization.",
    )
    kube_pipeline_cronjob: str = Field(
        default=f"{DEFAULT_MODEL_NAME}-pipeline",
        description="The suspended CronJob whose jobTemplate runs train + promote.",
    )

    # --- gateway behaviour ---------------------------------------------------------------------
    benchmark_budget_s: float = Field(
        default=30.0, gt=0, description="Longest a /benchmark request may run before it stops."
    )
    sse_keepalive_s: float = Field(
        default=15.0, gt=0, description="Seconds between keep-alive comments on SSE streams."
    )
    request_timeout_s: float = Field(
        default=2.0, gt=0, description="Deadline of each call to the predictor / feature service."
    )

    # --- gateway: browsers, authentication, limits (docs/security.md) ---------------------
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_CORS_ORIGINS),
        validation_alias=_env("CORS_ORIGINS"),
        description="Browser origins allowed to call the gateway (CORS), comma-separated; "
        "'*' allows any origin and must be given explicitly; empty: none.",
    )
    cors_allow_credentials: bool = Field(
        default=False,
        validation_alias=_env("CORS_ALLOW_CREDENTIALS"),
        description="Let browsers send cookies / HTTP auth cross-origin (never with '*').",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="API keys accepted on mutating and costly endpoints, comma-separated "
        f"(each at least {MIN_API_KEY_LENGTH} characters). With none here, in "
        "api_keys_file or from OIDC, the gateway is open.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A file with one API key per line, or a directory with one key per "
        "file (a mounted Secret); re-read when it changes, so keys rotate without restart.",
    )
    auth_reads: bool = Field(
        default=False,
        description="Require credentials on predictions and reads too (health, metrics "
        "and the API schema stay open).",
    )
    oidc_issuer: str = Field(
        default="", description="Accept JWTs signed by this OIDC issuer (empty: off)."
    )
    oidc_audience: str = Field(default="", description="The JWT audience to require.")
    oidc_jwks_url: str = Field(
        default="", description="The issuer's JWKS (default: from its discovery document)."
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest request body the gateway reads; larger ones get a 413.",
    )
    rate_limit_costly: str = Field(
        default="30/minute",
        description="Per-client limit on /train, /materialize, /reload, rollout controls "
        "shared by all gateways through Redis ('limits' notation, "
        "e.g. '30/minute;5/second'; empty: off).",
    )
    rate_limit_benchmark: str = Field(
        default="6/minute",
        description="Per-client limit on /benchmark and /benchmark/id (empty: off).",
    )
    benchmark_max_concurrent: int = Field(
        default=1, ge=1, description="Benchmarks one gateway runs at once; more get a 429."
    )
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
    http_body_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a client may take to send a request body (408)."
    )
    http_keepalive_s: int = Field(
        default=5, ge=1, description="Idle keep-alive connections are closed after this."
    )
    http_max_connections: int = Field(
        default=2048, ge=1, description="Concurrent connections per process; more get a 503."
    )

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    @field_validator("rollout_steps")
    @classmethod
    def _check_steps(cls, value: list[int]) -> list[int]:
        return check_steps(value)

    @field_validator("rollout_steps", "cors_origins", "api_keys", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        """A list variable: JSON (``[10, 50]``) or comma-separated (``10,50``)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin (scheme://host[:port], "
                    "no path) or '*'"
                )
        return value

    @field_validator("cors_allow_credentials")
    @classmethod
    def _no_wildcard_with_credentials(cls, value: bool, info: ValidationInfo) -> bool:
        if value and "*" in info.data.get("cors_origins", ()):
            raise ValueError(
                "cors_origins: '*' cannot be combined with cors_allow_credentials; "
                "list the origins that may send credentials"
            )
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, key in enumerate(value, start=1):
            problem = api_key_problem(key.get_secret_value())
            if problem:
                raise ValueError(f"api_keys: key #{index} {problem}")
        return value

    @field_validator("rate_limit_costly", "rate_limit_benchmark")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        if value.strip():
            try:
                parse_many(value)
            except ValueError as error:
                raise ValueError(
                    f"{value!r} is not a rate limit like '30/minute': {error}"
                ) from None
        return value.strip()

    @field_validator("storage_uri_map", mode="before")
    @classmethod
    def _storage_uri_map(cls, value: Any) -> Any:
        return _parse_uri_map(value)

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        self.state_dir = self.state_dir.expanduser().resolve()
        if not self.redis_url:
            self.redis_url = f"redis://{self.host}:{self.redis_port}/0"
        if not self.mlflow_uri:
            self.mlflow_uri = f"http://{self.host}:{self.mlflow_port}"
        if not self.predictor_url:
            self.predictor_url = f"http://{self.host}:{self.predictor_http_port}"
        if not self.predictor_grpc_target:
            self.predictor_grpc_target = f"{self.host}:{self.predictor_grpc_port}"
        if not self.candidate_predictor_url:
            self.candidate_predictor_url = self.predictor_url
        if not self.candidate_predictor_grpc_target:
            self.candidate_predictor_grpc_target = self.predictor_grpc_target
        if not self.feature_service_url:
            self.feature_service_url = f"http://{self.host}:{self.feature_service_port}"
        if self.airflow_url:
            self.pipeline_runner = "airflow"
        if self.db_path == _UNSET:
            self.db_path = self.state_dir / "vroom.db"
        if not self.database_url:
            self.database_url = f"sqlite:///{self.db_path}"
        if self.offline_store_path == _UNSET:
            self.offline_store_path = self.state_dir / "offline" / "vehicle_features.parquet"
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

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables: a child process sees the same ones."""
        data = self.model_dump(mode="json")
        data["api_keys"] = [key.get_secret_value() for key in self.api_keys]
        return {
            self.env_name(name): _env_value(value)
            for name, value in data.items()
            if value is not None
        }

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed and derived fields re-derived."""
        data = self.model_dump(
            exclude={
                "redis_url",
                "mlflow_uri",
                "predictor_url",
                "predictor_grpc_target",
                "candidate_predictor_url",
                "candidate_predictor_grpc_target",
                "feature_service_url",
                "db_path",
                "database_url",
                "offline_store_path",
                "feast_registry_path",
            }
            - set(changes)
        )
        data.update(changes)
        return Settings.model_validate(data)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
