"""Local rollouts: ask the running predictor to reload, load or unload its models.

The predictor speaks KServe's model repository extension: ``POST
/v2/repository/models/<name>/load`` makes it resolve the champion again and swap it in
without dropping requests (the old model serves until the new one is ready). The
version it serves is read from v2 model metadata (``GET /v2/models/<name>``,
``versions``) before and after, best effort, to tell ``rolled-out`` from ``unchanged``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from vroom_common.errors import DependencyUnavailable, NotFound
from vroom_common.events import ModelPromoted
from vroom_common.http_errors import error_message
from vroom_registry import candidate_name
from vroom_rollout.base import (
    BackendName,
    RolloutFailed,
    RolloutResult,
    RolloutStatus,
    RolloutTimeout,
)
from vroom_rollout.settings import RolloutSettings

log = structlog.get_logger(__name__)

#: Seconds to wait for the predictor to accept a connection (a reload may take longer).
CONNECT_TIMEOUT_S = 5.0
#: Seconds for a metadata read.
METADATA_TIMEOUT_S = 5.0
#: Seconds between metadata reads while waiting for the predictor to follow a promotion.
FOLLOW_POLL_S = 0.1


def repository_path(model_name: str, verb: str) -> str:
    """The repository-extension path that loads or unloads ``model_name``."""
    return f"/v2/repository/models/{quote(model_name, safe='')}/{verb}"


def metadata_path(model_name: str) -> str:
    """The v2 model metadata path of ``model_name``."""
    return f"/v2/models/{quote(model_name, safe='')}"


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class PredictorRepository:
    """KServe's model repository extension and v2 metadata of one predictor (REST)."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def served_version(self, model_name: str) -> str | None:
        """The version the predictor reports serving; ``None`` if it cannot say."""
        try:
            response = httpx.get(
                self.base_url + metadata_path(model_name), timeout=METADATA_TIMEOUT_S
            )
        except httpx.HTTPError:
            return None
        body = _json(response) if response.is_success else None
        versions = body.get("versions") if isinstance(body, dict) else None
        return str(versions[-1]) if isinstance(versions, list) and versions else None

    def follows(self, model_name: str, version: str, within_s: float) -> bool:
        """Whether the predictor serves ``version`` of ``model_name`` within ``within_s``
        seconds by itself (its watcher reloads on ``model-promoted``)."""
        deadline = time.monotonic() + within_s
        while True:
            if self.served_version(model_name) == version:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(FOLLOW_POLL_S)

    def load(self, model_name: str) -> None:
        """(Re)load ``model_name``: returns once the predictor serves what its source says."""
        self._post(model_name, "load")

    def unload(self, model_name: str) -> None:
        """Stop serving ``model_name`` (a model it does not know is already unloaded)."""
        self._post(model_name, "unload", missing_ok=True)

    def _post(self, model_name: str, verb: str, *, missing_ok: bool = False) -> None:
        url = self.base_url + repository_path(model_name, verb)
        timeout = httpx.Timeout(self.timeout_s, connect=CONNECT_TIMEOUT_S)
        try:
            response = httpx.post(url, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise RolloutTimeout(
                f"the predictor did not finish {verb}ing {model_name!r} within "
                f"{self.timeout_s:g}s (POST {url})"
            ) from exc
        except httpx.TransportError as exc:
            raise DependencyUnavailable(
                "predictor", f"POST {url}: {exc or type(exc).__name__}"
            ) from exc
        if response.status_code == httpx.codes.NOT_FOUND:
            if missing_ok:
                return
            raise NotFound(
                f"the predictor at {self.base_url} does not serve {model_name!r}: "
                f"{error_message(response.content, response.reason_phrase)}"
            )
        if not response.is_success:
            raise RolloutFailed(
                f"the predictor refused to {verb} {model_name!r} (HTTP {response.status_code} "
                f"from POST {url}): {error_message(response.content, response.reason_phrase)}"
            )


class LocalRollout:
    """Hot reload of a predictor running as a local process."""

    backend: BackendName = "local"

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.repository = PredictorRepository(settings.predictor_url, settings.rollout_timeout_s)
        self.base_url = self.repository.base_url

    def served_version(self) -> str | None:
        """The version the predictor reports serving; ``None`` if it cannot say."""
        return self.repository.served_version(self.settings.model_name)

    def rollout(self, promoted: ModelPromoted | None = None) -> RolloutResult:
        name = self.settings.model_name
        # The predictor's watcher reloads on the promotion's event: wait for it rather than
        # load a second time; ask only when it does not follow (no watcher, Redis down).
        if (
            promoted is not None
            and promoted.model_name == name
            and self.repository.follows(
                name, promoted.version, self.settings.local_rollout_follow_s
            )
        ):
            return self._result(promoted.version, promoted.previous_version, "followed")
        previous = self.served_version()
        self.repository.load(name)
        return self._result(self.served_version(), previous, "reloaded")

    def _result(self, current: str | None, previous: str | None, how: str) -> RolloutResult:
        name = self.settings.model_name
        status: RolloutStatus = (
            "unchanged" if current is not None and current == previous else "rolled-out"
        )
        log.info(
            "predictor serves the champion",
            how=how,
            model_name=name,
            version=current,
            previous=previous,
        )
        detail = (
            "followed the promotion and serves the champion"
            if how == "followed"
            else "reloaded the champion"
        )
        return RolloutResult(
            backend=self.backend,
            status=status,
            model_name=name,
            version=current,
            previous_version=previous,
            detail=f"the predictor at {self.base_url} {detail}",
        )


class LocalDeployer:
    """Progressive rollouts on one local predictor that hosts the champion and, beside
    it, the candidate (``<model>-candidate``, the registry's ``rollout`` alias)."""

    backend: BackendName = "local"

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.champion = PredictorRepository(settings.predictor_url, settings.rollout_timeout_s)
        self.candidate = PredictorRepository(
            settings.candidate_predictor_url, settings.rollout_timeout_s
        )
        self.candidate_name = candidate_name(settings.model_name)

    def _serves(self, repository: PredictorRepository, name: str, version: str) -> str | None:
        served = repository.served_version(name)
        if served != version:
            return None
        return f"{name} v{version} serves on the predictor at {repository.base_url}"

    def deploy_candidate(self, version: str) -> None:  # noqa: ARG002 - the alias names it
        """Load the candidate: the predictor resolves the ``rollout`` alias, which the
        controller pointed at the version first. Returns once it is loaded (or failed)."""
        self.candidate.load(self.candidate_name)

    def candidate_ready(self, version: str) -> str | None:
        detail = self._serves(self.candidate, self.candidate_name, version)
        if detail is None:
            served = self.candidate.served_version(self.candidate_name)
            raise RolloutFailed(
                f"the predictor loaded {self.candidate_name!r} v{served or '(none)'}, "
                f"not v{version}"
            )
        return detail

    def serve_champion(self, version: str, *, announced: bool = False) -> None:
        """Hot-reload the champion (the alias already moved); no request is dropped.
        ``announced``: a ``model-promoted`` event for ``version`` went out, which the
        predictor's watcher reloads on; it is waited for before being asked again."""
        name = self.settings.model_name
        if announced and self.champion.follows(name, version, self.settings.local_rollout_follow_s):
            return
        self.champion.load(name)

    def champion_serves(self, version: str) -> str | None:
        return self._serves(self.champion, self.settings.model_name, version)

    def remove_candidate(self) -> str:
        self.candidate.unload(self.candidate_name)
        return f"{self.candidate_name} unloaded from the predictor at {self.candidate.base_url}"
