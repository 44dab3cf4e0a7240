"""Local rollout: ask the running predictor to reload its model.

The predictor speaks KServe's model repository extension; ``POST
/v2/repository/models/<name>/load`` makes it resolve the champion again and swap it in
without dropping requests. The answer may carry the ``version`` it now serves.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import structlog

from vroom_common.errors import DependencyUnavailable, NotFound
from vroom_common.settings import Settings
from vroom_rollout.base import BackendName, RolloutFailed, RolloutResult, RolloutTimeout

log = structlog.get_logger(__name__)

#: Seconds to wait for the predictor to accept the connection (loading may take longer).
CONNECT_TIMEOUT_S = 5.0


def load_path(model_name: str) -> str:
    """The repository-extension path that (re)loads ``model_name``."""
    return f"/v2/repository/models/{quote(model_name, safe='')}/load"


def _error_text(response: httpx.Response) -> str:
    """The predictor's own message (KServe: ``{"error": ...}``, FastAPI: ``{"detail": ...}``)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
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
        self.url = settings.predictor_url.rstrip("/") + load_path(settings.model_name)

    def rollout(self) -> RolloutResult:
        name = self.settings.model_name
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
            raise NotFound(f"the predictor does not serve {name!r}: {_error_text(response)}")
        if not response.is_success:
            raise RolloutFailed(
                f"the predictor refused to reload {name!r} (HTTP {response.status_code} from "
                f"POST {self.url}): {_error_text(response)}"
            )
        version = _version(response)
        log.info("predictor reloaded", model_name=name, version=version, url=self.url)
        return RolloutResult(
            backend=self.backend,
            status="rolled-out",
            model_name=name,
            version=version,
            detail=f"predictor at {self.settings.predictor_url} reloaded the champion",
        )


def _version(response: httpx.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return str(version) if isinstance(version, str | int) and str(version) else None
