"""The gateway's own settings: the candidate arm, pipeline runners, browsers,
authentication and limits (docs/gateway.md, docs/security.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, Self
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

from vroom_common.settings import DEFAULT_MODEL_NAME, env_alias, parse_list
from vroom_features.drift import DRIFT_ALERT_PSI
from vroom_rollout.settings import RolloutSettings

#: The local dashboard's dev-server origins, allowed by CORS unless configured otherwise.
DEFAULT_CORS_ORIGINS: Final = ("http://localhost:3000", "http://127.0.0.1:3000")

#: Shortest API key accepted: a key is a random secret, not a password.
MIN_API_KEY_LENGTH: Final = 16


def api_key_problem(key: str) -> str | None:
    """What makes ``key`` unusable as an API key (None when it is fine): too short, or
    holding whitespace or commas (keys are listed comma-separated)."""
    if len(key) < MIN_API_KEY_LENGTH:
        return f"is shorter than {MIN_API_KEY_LENGTH} characters"
    if any(char.isspace() or char == "," or not char.isprintable() for char in key):
        return "may hold no whitespace, commas or unprintable characters"
    return None


class GatewaySettings(RolloutSettings):
    """The shared and rollout settings, and the gateway's own."""

    # --- monitoring ---------------------------------------------------------------------
    drift_alert_psi: float = Field(
        default=DRIFT_ALERT_PSI,
        gt=0,
        description="PSI above which GET /monitoring lists a distribution as drifted "
        "(the chart's drift alert uses the same value).",
    )
    prediction_log_sample: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of prediction requests written to the prediction log "
        "(0: none; a batch is logged whole or not at all).",
    )
    prediction_log_buffer: int = Field(
        default=10_000,
        ge=1,
        description="Logged requests held in memory while Redis is away; more are dropped "
        "(and counted).",
    )

    # --- the candidate arm of a rollout ------------------------------------------------
    rollout_candidate_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="Deadline of a candidate call; past it the champion answers instead.",
    )
    rollout_mirror_max_inflight: int = Field(
        default=32, ge=1, description="Mirrored calls in flight per gateway; more are skipped."
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
        validation_alias=env_alias("AIRFLOW_URL"),
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
        validation_alias=env_alias("CORS_ORIGINS"),
        description="Browser origins allowed to call the gateway (CORS), comma-separated; "
        "'*' allows any origin and must be given explicitly; empty: none.",
    )
    cors_allow_credentials: bool = Field(
        default=False,
        validation_alias=env_alias("CORS_ALLOW_CREDENTIALS"),
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
    http_body_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a client may take to send a request body (408)."
    )

    DERIVED_FIELDS: ClassVar[frozenset[str]] = RolloutSettings.DERIVED_FIELDS | {
        "candidate_predictor_grpc_target"
    }

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        return parse_list(value)

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

    @model_validator(mode="after")
    def _derive_gateway(self) -> Self:
        if not self.candidate_predictor_grpc_target:
            self.candidate_predictor_grpc_target = self.predictor_grpc_target
        if self.airflow_url:
            self.pipeline_runner = "airflow"
        return self


@lru_cache(maxsize=1)
def get_gateway_settings() -> GatewaySettings:
    """The gateway process's settings, read from the environment once."""
    return GatewaySettings()
