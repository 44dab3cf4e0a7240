"""A small fake Kubernetes API server: one InferenceService, every request recorded.

It serves ``GET`` and ``PATCH`` (JSON merge patch only, as the real API server does
for custom resources) of the one path an InferenceService lives at, answers ``404``
for every other path, and can be told to fail a method with a status (``fail``) or
to report ``Ready`` only after some GETs following a spec change
(``ready_after_gets``), like a KServe controller reconciling a new generation.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fake_http import Recorded, serve_json

ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/{name}"

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def inference_service(
    namespace: str, name: str, storage_uri: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """An InferenceService as KServe reports it once reconciled (generation 1, Ready)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 1,
            "resourceVersion": "1",
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "vroom-forecast"},
                    "runtime": "vroom-forecast",
                    "storageUri": storage_uri,
                }
            }
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


@dataclass
class FakeKube:
    """The scripted state of the fake server (mutable from the tests)."""

    namespace: str
    name: str
    isvc: dict[str, Any] | None
    fail: dict[str, int] = field(default_factory=dict)
    """Method -> HTTP status to answer with instead (a Kubernetes ``Status`` body)."""
    ready_after_gets: int = 0
    """After a spec change, GETs that still see the old generation."""
    pending_ready: str = "Unknown"
    """Ready status shown meanwhile; ``"True"`` is a stale Ready left from the old generation."""
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _pending_gets: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> str:
        return ISVC_PATH.format(namespace=self.namespace, name=self.name)

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            if method in self.fail:
                return self._status(self.fail[method])
            if path != self.path or self.isvc is None:
                return self._status(404)
            if method == "GET":
                return 200, self._get()
            if method == "PATCH":
                if headers.get("content-type") != "application/merge-patch+json":
                    return self._status(415)
                return 200, self._patch(body)
            return self._status(405)

    def _get(self) -> Any:
        assert self.isvc is not None
        if self._pending_gets > 0:
            self._pending_gets -= 1
            if self._pending_gets == 0:
                self.isvc["status"] = {
                    "observedGeneration": self.isvc["metadata"]["generation"],
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
        return copy.deepcopy(self.isvc)

    def _patch(self, body: Any) -> Any:
        assert self.isvc is not None
        before = copy.deepcopy(self.isvc["spec"])
        self.isvc = merge_patch(self.isvc, body)
        metadata = self.isvc["metadata"]
        metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)
        if self.isvc["spec"] != before:
            metadata["generation"] += 1
            if self.ready_after_gets > 0:
                # The controller has not seen the new generation yet.
                self._pending_gets = self.ready_after_gets
                self.isvc["status"]["conditions"] = [
                    {
                        "type": "Ready",
                        "status": self.pending_ready,
                        "reason": "RevisionMissing",
                        "message": "Revision is being created",
                    }
                ]
            else:
                self.isvc["status"]["observedGeneration"] = metadata["generation"]
        return copy.deepcopy(self.isvc)

    def _status(self, code: int) -> tuple[int, Any]:
        reason = _REASONS.get(code, "Unknown")
        message = {
            403: (
                f'inferenceservices.serving.kserve.io "{self.name}" is forbidden: User '
                f'"system:serviceaccount:{self.namespace}:vroom" cannot patch resource '
                f'"inferenceservices" in API group "serving.kserve.io" in the namespace '
                f'"{self.namespace}"'
            ),
            404: f'inferenceservices.serving.kserve.io "{self.name}" not found',
            409: (
                "Operation cannot be fulfilled on inferenceservices.serving.kserve.io "
                f'"{self.name}": the object has been modified; please apply your changes to '
                "the latest version"
            ),
        }.get(code, reason)
        return code, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }


@contextmanager
def serve(fake: FakeKube) -> Iterator[FakeKube]:
    """Run ``fake`` on a free loopback port (``fake.url``) for the block."""
    with serve_json(fake, lambda r: fake.handle(r.method, r.path, r.body, r.headers)) as served:
        yield served
