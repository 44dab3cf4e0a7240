"""Cluster rollouts through the Kubernetes API.

``KubernetesRollout`` (the immediate strategy) points the KServe InferenceService at the
champion's artifacts; ``KubernetesDeployer`` (progressive rollouts) runs the candidate
as a second InferenceService beside it and patches the champion on promotion.

One JSON merge patch (``application/merge-patch+json``) of the InferenceService sets
``spec.predictor.model.storageUri`` and two annotations naming the model and version;
KServe then rolls the predictor pods. The patch is skipped when the resource already
points at the champion, so repeating a rollout is free. Optionally the rollout waits
until the InferenceService reports ``Ready`` for the patched generation.

RBAC needed by the service account: ``get`` and ``patch`` on
``inferenceservices.serving.kserve.io`` in the InferenceService's namespace.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, Final

import structlog
from kubernetes import client

from vroom_common.errors import (
    Conflict,
    NotFound,
)
from vroom_common.events import ModelPromoted
from vroom_kube import MERGE_PATCH, KubeApi, namespaced
from vroom_registry import candidate_name
from vroom_rollout.base import (
    BackendName,
    RolloutFailed,
    RolloutResult,
    RolloutStatus,
    RolloutTimeout,
)
from vroom_rollout.champion import ChampionRef, resolve_champion, resolve_version
from vroom_rollout.local import METADATA_TIMEOUT_S, PredictorRepository
from vroom_rollout.settings import RolloutSettings

log = structlog.get_logger(__name__)

GROUP: Final = "serving.kserve.io"
VERSION: Final = "v1beta1"
PLURAL: Final = "inferenceservices"
#: Annotations recording which model version the InferenceService serves.
ANNOTATION_MODEL_NAME: Final = "vroom-forecast.io/model-name"
ANNOTATION_MODEL_VERSION: Final = "vroom-forecast.io/model-version"
#: Recorded in ``metadata.managedFields`` as the writer of the patched fields.
FIELD_MANAGER: Final = "vroom-rollout"


def isvc_path(namespace: str, name: str = "") -> str:
    """The REST path of an InferenceService (of the collection, without ``name``)."""
    return f"/apis/{GROUP}/{VERSION}" + namespaced(namespace, PLURAL, *([name] if name else []))


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


class InferenceServices:
    """The InferenceServices of one namespace, through the Kubernetes adapter.

    ``rbac`` completes a 401/403 with what the service account needs.
    """

    def __init__(self, namespace: str, api_client: client.ApiClient | None, rbac: str) -> None:
        self.namespace = namespace
        self.kube = KubeApi(FIELD_MANAGER, api_client=api_client)
        self.rbac = rbac

    def resource(self, name: str) -> str:
        return f"InferenceService {self.namespace}/{name}"

    def _call(
        self,
        verb: str,
        method: str,
        name: str,  # the resource's; a POST goes to the collection
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        return self.kube.request(
            f"{verb} {self.resource(name)}",
            method,
            isvc_path(self.namespace, "" if method == "POST" else name),
            rbac=self.rbac,
            namespace=self.namespace,
            body=body,
            content_type=content_type,
            hint="check inference_service_name and kube_namespace",
        )

    def get(self, name: str) -> dict[str, Any]:
        """The InferenceService as the API server has it."""
        return self._call("get", "GET", name)

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the InferenceService; returns it as patched."""
        return self._call("patch", "PATCH", name, body, MERGE_PATCH)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body`` (``Conflict`` when its name is taken)."""
        return self._call("create", "POST", str(body["metadata"]["name"]), body)

    def delete(self, name: str) -> None:
        """Delete the InferenceService (``NotFound`` when it is already gone)."""
        self._call("delete", "DELETE", name)


class KubernetesRollout:
    """Roll the champion out by patching a KServe InferenceService."""

    backend: BackendName = "kubernetes"

    def __init__(
        self,
        settings: RolloutSettings,
        api_client: client.ApiClient | None = None,
        *,
        resolve: Callable[[RolloutSettings], ChampionRef] = resolve_champion,
        poll_interval_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self.name = settings.inference_service_name
        self.api = InferenceServices(
            self.namespace, api_client, f"get and patch on {PLURAL}.{GROUP}"
        )
        self.resource = self.api.resource(self.name)
        self._resolve = resolve
        self.poll_interval_s = poll_interval_s

    def get(self) -> dict[str, Any]:
        return self.api.get(self.name)

    def patch(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.patch(self.name, body)

    def rollout(self, promoted: ModelPromoted | None = None) -> RolloutResult:  # noqa: ARG002
        # A cluster's predictor does not watch promotions: the patch is what rolls out.
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


# --- progressive rollouts ---------------------------------------------------------------------

#: Marks the candidate InferenceService and its predictor pods.
LABEL_ROLE: Final = "vroom-forecast.io/role"
#: The champion InferenceService a candidate was copied from.
ANNOTATION_CANDIDATE_OF: Final = "vroom-forecast.io/candidate-of"
#: Annotations of the champion the candidate keeps (KServe's own: deployment mode, ...).
COPIED_ANNOTATION_PREFIX: Final = "serving.kserve.io/"
#: ``status.modelStatus.transitionStatus`` values after which KServe stops trying.
FAILED_TRANSITIONS: Final = frozenset({"BlockedByFailedLoad", "InvalidSpec"})


def candidate_manifest(
    champion: dict[str, Any], candidate: ChampionRef, name: str, served_model: str
) -> dict[str, Any]:
    """The candidate InferenceService: the champion's spec with the candidate's
    ``storageUri``, one replica to start with, serving under ``served_model``.

    KServe appends the InferenceService's ``args`` to the runtime's, and the model
    server takes the last ``--model_name``; the gateway calls the candidate by that name.
    The champion owns the candidate, so deleting the champion removes it too.
    """
    metadata = champion.get("metadata") or {}
    spec = copy.deepcopy(champion.get("spec") or {})
    predictor = spec.setdefault("predictor", {})
    predictor.pop("canaryTrafficPercent", None)
    predictor["minReplicas"] = 1
    predictor["labels"] = {**(predictor.get("labels") or {}), LABEL_ROLE: "candidate"}
    model = predictor.setdefault("model", {})
    model["storageUri"] = candidate.storage_uri
    model["args"] = [*(model.get("args") or []), "--model_name", served_model]
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key.startswith(COPIED_ANNOTATION_PREFIX)
    }
    annotations.update(
        {
            ANNOTATION_MODEL_NAME: candidate.model_name,
            ANNOTATION_MODEL_VERSION: candidate.version,
            ANNOTATION_CANDIDATE_OF: str(metadata.get("name", "")),
        }
    )
    labels = {
        **(metadata.get("labels") or {}),
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        LABEL_ROLE: "candidate",
    }
    manifest: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": metadata.get("namespace"),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }
    if metadata.get("uid"):
        manifest["metadata"]["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "InferenceService",
                "name": metadata["name"],
                "uid": metadata["uid"],
            }
        ]
    return manifest


def load_failure(isvc: dict[str, Any]) -> str | None:
    """Why KServe gave up on the InferenceService's current generation, if it did."""
    generation = _dig(isvc, "metadata", "generation")
    observed = _dig(isvc, "status", "observedGeneration")
    if generation is not None and observed is not None and int(observed) < int(generation):
        return None  # the failure, if any, is about an older spec
    status = _dig(isvc, "status", "modelStatus") or {}
    if status.get("transitionStatus") not in FAILED_TRANSITIONS:
        return None
    info = status.get("lastFailureInfo") or {}
    detail = ": ".join(str(info[k]) for k in ("reason", "message") if info.get(k))
    return f"{status['transitionStatus']}" + (f" ({detail})" if detail else "")


ServedVersion = Callable[[str, str], "str | None"]
"""``(predictor base URL, served model name)`` -> the version it reports, or ``None``."""


def predictor_version(base_url: str, model_name: str) -> str | None:
    return PredictorRepository(base_url, timeout_s=METADATA_TIMEOUT_S).served_version(model_name)


class KubernetesDeployer:
    """Progressive rollouts on a cluster: the candidate is an InferenceService of its own
    (``<isvc>-candidate``) beside the champion's, and the gateway splits and mirrors
    traffic between the two predictors' Services.

    RBAC: ``get``, ``patch`` on the champion InferenceService; ``get``, ``patch``,
    ``delete`` on the candidate's; ``create`` on ``inferenceservices``.
    """

    backend: BackendName = "kubernetes"

    def __init__(
        self,
        settings: RolloutSettings,
        api_client: client.ApiClient | None = None,
        *,
        resolve: Callable[[RolloutSettings, str], ChampionRef] = resolve_version,
        served_version: ServedVersion = predictor_version,
    ) -> None:
        self.settings = settings
        self.champion_name = settings.inference_service_name
        self.candidate_name = candidate_name(self.champion_name)
        self.served_candidate = candidate_name(settings.model_name)
        self.api = InferenceServices(
            settings.kube_namespace,
            api_client,
            f"get and patch on {PLURAL}.{GROUP} {self.champion_name!r}, get, patch and "
            f"delete on {self.candidate_name!r}, and create on {PLURAL}.{GROUP}",
        )
        self._resolve = resolve
        self._served_version = served_version

    # --- the candidate --------------------------------------------------------------------

    def deploy_candidate(self, version: str) -> None:
        """Create the candidate InferenceService, or bring an existing one to ``version``
        (a controller that died after creating it, or a leftover)."""
        candidate = self._resolve(self.settings, version)
        champion = self.api.get(self.champion_name)
        manifest = candidate_manifest(
            champion, candidate, self.candidate_name, self.served_candidate
        )
        try:
            self.api.create(manifest)
        except Conflict:
            existing = self.api.get(self.candidate_name)
            if _serves_uri(existing, candidate):
                return
            metadata = manifest["metadata"]
            self.api.patch(
                self.candidate_name,
                {
                    "metadata": {
                        "labels": metadata["labels"],
                        "annotations": metadata["annotations"],
                    },
                    "spec": manifest["spec"],
                },
            )
        log.info(
            "candidate inference service deployed",
            resource=self.api.resource(self.candidate_name),
            version=version,
            storage_uri=candidate.storage_uri,
        )

    def candidate_ready(self, version: str) -> str | None:
        try:
            isvc = self.api.get(self.candidate_name)
        except NotFound as exc:
            raise RolloutFailed(
                f"{self.api.resource(self.candidate_name)} disappeared while v{version} "
                "was starting"
            ) from exc
        return self._serving(
            isvc,
            self.candidate_name,
            self.settings.candidate_predictor_url,
            self.served_candidate,
            version,
        )

    def remove_candidate(self) -> str:
        resource = self.api.resource(self.candidate_name)
        try:
            self.api.delete(self.candidate_name)
        except NotFound:
            return f"{resource} was already gone"
        log.info("candidate inference service deleted", resource=resource)
        return f"{resource} deleted"

    # --- the champion -----------------------------------------------------------------------

    def serve_champion(self, version: str, *, announced: bool = False) -> None:  # noqa: ARG002
        """Patch the champion's ``storageUri`` (a rolling update: no unavailability); the
        cluster's predictor does not watch promotions, so ``announced`` changes nothing."""
        target = self._resolve(self.settings, version)
        isvc = self.api.get(self.champion_name)
        if _serves_uri(isvc, target):
            return
        self.api.patch(self.champion_name, patch_body(target))
        log.info(
            "inference service patched",
            resource=self.api.resource(self.champion_name),
            version=version,
            storage_uri=target.storage_uri,
        )

    def champion_serves(self, version: str) -> str | None:
        isvc = self.api.get(self.champion_name)
        return self._serving(
            isvc,
            self.champion_name,
            self.settings.predictor_url,
            self.settings.model_name,
            version,
        )

    # --- shared -----------------------------------------------------------------------------

    def _serving(
        self, isvc: dict[str, Any], name: str, url: str, served_model: str, version: str
    ) -> str | None:
        """A description once ``isvc`` is Ready for its spec of ``version`` and its
        predictor reports that version; ``None`` while on the way; raises when KServe
        gave up."""
        resource = self.api.resource(name)
        if _dig(isvc, "metadata", "annotations", ANNOTATION_MODEL_VERSION) != version:
            return None
        failure = load_failure(isvc)
        if failure is not None:
            raise RolloutFailed(f"{resource} failed to serve v{version}: {failure}")
        generation = _dig(isvc, "metadata", "generation")
        if not is_ready(isvc, int(generation) if generation else None):
            return None
        served = self._served_version(url, served_model)
        if served != version:
            return None
        uri = _dig(isvc, "spec", "predictor", "model", "storageUri")
        return f"{resource} serves {served_model} v{version} from {uri}"


def _serves_uri(isvc: dict[str, Any], target: ChampionRef) -> bool:
    uri = _dig(isvc, "spec", "predictor", "model", "storageUri")
    version = _dig(isvc, "metadata", "annotations", ANNOTATION_MODEL_VERSION)
    return bool(uri == target.storage_uri and version == target.version)
