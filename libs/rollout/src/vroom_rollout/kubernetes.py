"""Cluster rollout: point the KServe InferenceService at the champion's artifacts.

One JSON merge patch (``application/merge-patch+json``) of the InferenceService sets
``spec.predictor.model.storageUri`` and two annotations naming the model and version;
KServe then rolls the predictor pods. The patch is skipped when the resource already
points at the champion, so repeating a rollout is free. Optionally the rollout waits
until the InferenceService reports ``Ready`` for the patched generation.

RBAC needed by the service account: ``get`` and ``patch`` on
``inferenceservices.serving.kserve.io`` in the InferenceService's namespace.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, Final

import structlog
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vroom_common.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    VroomError,
)
from vroom_common.settings import Settings
from vroom_rollout.base import BackendName, RolloutResult, RolloutStatus, RolloutTimeout
from vroom_rollout.champion import ChampionRef, resolve_champion

log = structlog.get_logger(__name__)

GROUP: Final = "serving.kserve.io"
VERSION: Final = "v1beta1"
PLURAL: Final = "inferenceservices"
#: Annotations recording which model version the InferenceService serves.
ANNOTATION_MODEL_NAME: Final = "vroom-forecast.io/model-name"
ANNOTATION_MODEL_VERSION: Final = "vroom-forecast.io/model-version"
#: JSON merge patch (RFC 7386). Custom resources accept it; strategic merge they do not.
MERGE_PATCH: Final = "application/merge-patch+json"
#: Recorded in ``metadata.managedFields`` as the writer of the patched fields.
FIELD_MANAGER: Final = "vroom-rollout"
#: (connect, read) seconds for each API request.
REQUEST_TIMEOUT: Final = (5.0, 30.0)


def isvc_path(namespace: str, name: str) -> str:
    """The REST path of an InferenceService."""
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def patch_body(champion: ChampionRef) -> dict[str, Any]:
    """The merge patch that makes an InferenceService serve ``champion``."""
    return {
        "metadata": {
            "annotations": {
                ANNOTATION_MODEL_NAME: champion.model_name,
                ANNOTATION_MODEL_VERSION: champion.version,
            }
        },
        "spec": {"predictor": {"model": {"storageUri": champion.storage_uri}}},
    }


def load_api_client() -> client.ApiClient:
    """A client from the pod's service account, else from the kubeconfig."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException as in_cluster:
        try:
            # KUBECONFIG as it is now (the client reads it once, at import).
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        except (config.ConfigException, OSError) as kubeconfig:
            raise DependencyUnavailable(
                "kubernetes",
                f"not running in a cluster ({in_cluster}) and no usable kubeconfig "
                f"({kubeconfig}); set KUBECONFIG or run in a pod with a service account",
            ) from kubeconfig
    return client.ApiClient(configuration)


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def ready_condition(isvc: dict[str, Any]) -> dict[str, Any] | None:
    """The ``Ready`` entry of ``status.conditions``, if any."""
    conditions = _dig(isvc, "status", "conditions") or []
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"), None)


def is_ready(isvc: dict[str, Any], generation: int | None) -> bool:
    """Ready, and (when the controller reports it) for ``generation`` or later."""
    condition = ready_condition(isvc)
    if condition is None or condition.get("status") != "True":
        return False
    observed = _dig(isvc, "status", "observedGeneration")
    return generation is None or observed is None or int(observed) >= generation


def _describe(condition: dict[str, Any] | None) -> str:
    if condition is None:
        return "no Ready condition reported yet"
    parts = [f"Ready={condition.get('status')}"]
    parts += [f"{key}={condition[key]}" for key in ("reason", "message") if condition.get(key)]
    return ", ".join(parts)


def api_message(exc: ApiException) -> str:
    """The ``message`` of the Kubernetes ``Status`` body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or exc.status)


class KubernetesRollout:
    """Roll the champion out by patching a KServe InferenceService."""

    backend: BackendName = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        api_client: client.ApiClient | None = None,
        *,
        resolve: Callable[[Settings], ChampionRef] = resolve_champion,
        poll_interval_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self.name = settings.inference_service_name
        self.resource = f"InferenceService {self.namespace}/{self.name}"
        self._api_client = api_client
        self._resolve = resolve
        self.poll_interval_s = poll_interval_s

    def _objects(self) -> client.CustomObjectsApi:
        # Config is loaded on first use, so building the rollout never fails on its own.
        if self._api_client is None:
            self._api_client = load_api_client()
        return client.CustomObjectsApi(self._api_client)

    def _call(self, verb: str, request: Callable[[], object]) -> dict[str, Any]:
        """Run one API request; errors become ``VroomError``s naming the resource."""
        try:
            answer = request()
        except ApiException as exc:
            raise self._error(verb, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable(
                "kubernetes", f"{verb} {self.resource}: {exc or type(exc).__name__}"
            ) from exc
        if not isinstance(answer, dict):
            raise DependencyUnavailable(
                "kubernetes", f"{verb} {self.resource}: not a JSON object: {answer!r:.200}"
            )
        return answer

    def _error(self, verb: str, exc: ApiException) -> VroomError:
        message = api_message(exc)
        status = exc.status
        if status == 404:
            return NotFound(
                f"{self.resource} not found ({verb} {isvc_path(self.namespace, self.name)}): "
                f"{message}; check inference_service_name and kube_namespace"
            )
        if status in (401, 403):
            return PermissionDenied(
                f"not allowed to {verb} {self.resource} (HTTP {status}): {message}; the "
                f"service account needs get and patch on {PLURAL}.{GROUP} in namespace "
                f"{self.namespace}"
            )
        if status == 409:
            return Conflict(f"{verb} {self.resource} conflicted (HTTP 409): {message}")
        if status in (400, 422):
            return InvalidInput(f"{verb} {self.resource} was rejected (HTTP {status}): {message}")
        return DependencyUnavailable(
            "kubernetes", f"{verb} {self.resource} failed (HTTP {status}): {message}"
        )

    def get(self) -> dict[str, Any]:
        """The InferenceService as the API server has it."""
        api = self._objects()
        return self._call(
            "get",
            lambda: api.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the InferenceService; returns it as patched."""
        api = self._objects()
        return self._call(
            "patch",
            lambda: api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                body,
                field_manager=FIELD_MANAGER,
                # Explicit: older clients picked json-patch (a list of operations) by default.
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    def rollout(self) -> RolloutResult:
        champion = self._resolve(self.settings)
        isvc = self.get()
        current_uri = _dig(isvc, "spec", "predictor", "model", "storageUri")
        current_version = _dig(isvc, "metadata", "annotations", ANNOTATION_MODEL_VERSION)
        if current_uri == champion.storage_uri and current_version == champion.version:
            status: RolloutStatus = "unchanged"
            generation = _dig(isvc, "metadata", "generation")
            detail = f"{self.resource} already serves {champion.storage_uri}"
        else:
            isvc = self.patch(patch_body(champion))
            status = "rolled-out"
            generation = _dig(isvc, "metadata", "generation")
            detail = (
                f"patched {self.resource}: storageUri {current_uri or '(none)'} -> "
                f"{champion.storage_uri}"
            )
            log.info(
                "inference service patched",
                resource=self.resource,
                version=champion.version,
                previous_version=current_version,
                storage_uri=champion.storage_uri,
            )
        if self.settings.rollout_wait_ready:
            waited = self.wait_ready(champion, int(generation) if generation else None, isvc)
            detail += f"; Ready after {waited:.1f}s"
        return RolloutResult(
            backend=self.backend,
            status=status,
            model_name=champion.model_name,
            version=champion.version,
            previous_version=str(current_version) if current_version else None,
            detail=detail,
        )

    def wait_ready(
        self, champion: ChampionRef, generation: int | None, isvc: dict[str, Any] | None = None
    ) -> float:
        """Poll until Ready for ``generation``; returns the seconds waited."""
        timeout = self.settings.rollout_timeout_s
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if isvc is not None and is_ready(isvc, generation):
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                last = _describe(ready_condition(isvc)) if isvc is not None else "no answer"
                observed = _dig(isvc, "status", "observedGeneration")
                raise RolloutTimeout(
                    f"{self.resource} did not become Ready within {timeout:g}s after rolling "
                    f"out {champion.model_name} v{champion.version} (generation {generation}, "
                    f"observed {observed}): {last}"
                )
            time.sleep(max(0.0, min(self.poll_interval_s, deadline - time.monotonic())))
            isvc = self.get()
