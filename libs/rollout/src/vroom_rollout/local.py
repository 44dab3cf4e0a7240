"""Local rollout: ask the running predictor to reload its model.

The predictor speaks KServe's model repository extension: ``POST
/v2/repository/models/<name>/load`` makes it resolve the champion again and swap it in
without dropping requests (the old model serves until the new one is ready). The
version it serves is read from v2 model metadata (``GET /v2/models/<name>``,
``versions``) before and after, best effort, to tell ``rolled-out`` from ``unchanged``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import structlog

from vroom_common.errors import DependencyUnavailable, NotFound
from vroom_common.settings import Settings
from vroom_rollout.base import (
    BackendName,
    RolloutFailed,
    RolloutResult,
    RolloutStatus,
    RolloutTimeout,
)

log = structlog.get_logger(__name__)

#: Seconds to wait for the predictor to accept a connection (a reload may take longer).
CONNECT_TIMEOUT_S = 5.0
#: Seconds for a metadata read.
METADATA_TIMEOUT_S = 5.0


def load_path(model_name: str) -> str:
    """The repository-extension path that (re)loads ``model_name``."""
    return f"/v2/repository/models/{quote(model_name, safe='')}/load"


def metadata_path(model_name: str) -> str:
    """The v2 model metadata path of ``model_name``."""
    return f"/v2/models/{quote(model_name, safe='')}"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    """The predictor's own message (KServe: ``{"error": ...}``, FastAPI: ``{"detail": ...}``)."""
    body = _json(response)
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key])
    return response.text.strip()[:500] or response.reason_phrase


class LocalRollout:
    """Hot reload of a predictor running as a local process."""

    backend: BackendName = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.predictor_url.rstrip("/")
        self.url = self.base_url + load_path(settings.model_name)

    def served_version(self) -> str | None:
        """The version the predictor reports serving; ``None`` if it cannot say."""
        try:
            response = httpx.get(
                self.base_url + metadata_path(self.settings.model_name), timeout=METADATA_TIMEOUT_S
            )
        except httpx.HTTPError:
            return None
        body = _json(response) if response.is_success else None
        versions = body.get("versions") if isinstance(body, dict) else None
        return str(versions[-1]) if isinstance(versions, list) and versions else None

    def rollout(self) -> RolloutResult:
        name = self.settings.model_name
        previous = self.served_version()
        timeout = httpx.Timeout(self.settings.rollout_timeout_s, connect=CONNECT_TIMEOUT_S)
        try:
            response = httpx.post(self.url, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise RolloutTimeout(
                f"the predictor did not finish reloading {name!r} within "
                f"{self.settings.rollout_timeout_s:g}s (POST {self.url})"
            ) from exc
        except httpx.TransportError as exc:
            raise DependencyUnavailable(
                "predictor", f"POST {self.url}: {exc or type(exc).__name__}"
            ) from exc
        if response.status_code == httpx.codes.NOT_FOUND:
            raise NotFound(
                f"the predictor at {self.base_url} does not serve {name!r}: {_error_text(response)}"
            )
        if not response.is_success:
            raise RolloutFailed(
                f"the predictor refused to reload {name!r} (HTTP {response.status_code} from "
                f"POST {self.url}): {_error_text(response)}"
            )
        current = self.served_version()
        status: RolloutStatus = (
            "unchanged" if current is not None and current == previous else "rolled-out"
        )
        log.info("predictor reloaded", model_name=name, version=current, previous=previous)
        return RolloutResult(
            backend=self.backend,
            status=status,
            model_name=name,
            version=current,
            previous_version=previous,
            detail=f"the predictor at {self.base_url} reloaded the champion",
        )
