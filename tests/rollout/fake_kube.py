"""A small fake Kubernetes API server: the InferenceServices of one namespace, every
request recorded.

It serves ``GET``, ``PATCH`` (JSON merge patch only, as the real API server does for
custom resources) and ``DELETE`` of an InferenceService, ``POST`` (create) to the
collection, answers ``404`` for every other path, and can be told to fail a method
with a status (``fail``) or to report ``Ready`` only after some GETs following a spec
change (``ready_after_gets``), like a KServe controller reconciling a new generation.
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
            "uid": f"uid-{name}",
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
    """The scripted state of the fake server (mutable from the tests).

    ``name`` is the InferenceService the tests start with (``isvc``); a POST to the
    collection creates others, which start not Ready and turn Ready after
    ``ready_after_gets`` GETs, like a new generation.
    """

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
    others: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every other InferenceService of the namespace, by name."""
    _pending_gets: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> str:
        return ISVC_PATH.format(namespace=self.namespace, name=self.name)

    @property
    def collection(self) -> str:
        return self.path.rsplit("/", 1)[0]

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    def calls(self) -> list[tuple[str, str]]:
        """``(method, name)`` of each request; the collection is ``""``."""
        return [
            (r.method, r.path[len(self.collection) + 1 :] if r.path != self.collection else "")
            for r in self.requests
        ]

    def _find(self, name: str) -> dict[str, Any] | None:
        return self.isvc if name == self.name else self.others.get(name)

    def _store(self, name: str, isvc: dict[str, Any] | None) -> None:
        if name == self.name:
            self.isvc = isvc
        elif isvc is None:
            self.others.pop(name, None)
        else:
            self.others[name] = isvc

    def handle(  # noqa: PLR0911 - one answer per verb and per failure
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        with self._lock:
            if method in self.fail:
                return self._status(self.fail[method])
            if path == self.collection:
                return self._create(body) if method == "POST" else self._status(405)
            if not path.startswith(self.collection + "/"):
                return self._status(404)
            name = path[len(self.collection) + 1 :]
            isvc = self._find(name)
            if isvc is None:
                return self._status(404, name)
            if method == "GET":
                return 200, self._get(name, isvc)
            if method == "PATCH":
                if headers.get("content-type") != "application/merge-patch+json":
                    return self._status(415)
                return 200, self._patch(name, isvc, body)
            if method == "DELETE":
                self._store(name, None)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            return self._status(405)

    def _create(self, body: Any) -> tuple[int, Any]:
        name = body["metadata"]["name"]
        if self._find(name) is not None:
            return self._status(409, name, exists=True)
        isvc = copy.deepcopy(body)
        isvc["metadata"].update(generation=1, resourceVersion="1", uid=f"uid-{name}")
        isvc["status"] = {"observedGeneration": 1, "conditions": []}
        self._store(name, isvc)
        self._not_ready(name, isvc)
        return 201, copy.deepcopy(isvc)

    def _not_ready(self, name: str, isvc: dict[str, Any]) -> None:
        if self.ready_after_gets <= 0:
            isvc["status"] = {
                "observedGeneration": isvc["metadata"]["generation"],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
            return
        # The controller has not seen the new generation yet.
        self._pending_gets[name] = self.ready_after_gets
        isvc["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": self.pending_ready,
                "reason": "RevisionMissing",
                "message": "Revision is being created",
            }
        ]

    def _get(self, name: str, isvc: dict[str, Any]) -> Any:
        pending = self._pending_gets.get(name, 0)
        if pending > 0:
            self._pending_gets[name] = pending - 1
            if pending == 1:
                isvc["status"] = {
                    "observedGeneration": isvc["metadata"]["generation"],
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
        return copy.deepcopy(isvc)

    def _patch(self, name: str, isvc: dict[str, Any], body: Any) -> Any:
        before = copy.deepcopy(isvc["spec"])
        isvc = merge_patch(isvc, body)
        self._store(name, isvc)
        metadata = isvc["metadata"]
        metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)
        if isvc["spec"] != before:
            metadata["generation"] += 1
            self._not_ready(name, isvc)
        return copy.deepcopy(isvc)

    def _status(self, code: int, name: str = "", *, exists: bool = False) -> tuple[int, Any]:
        name = name or self.name
        reason = "AlreadyExists" if exists else _REASONS.get(code, "Unknown")
        message = {
            403: (
                f'inferenceservices.serving.kserve.io "{name}" is forbidden: User '
                f'"system:serviceaccount:{self.namespace}:vroom" cannot patch resource '
                f'"inferenceservices" in API group "serving.kserve.io" in the namespace '
                f'"{self.namespace}"'
            ),
            404: f'inferenceservices.serving.kserve.io "{name}" not found',
            409: (
                f'inferenceservices.serving.kserve.io "{name}" already exists'
                if exists
                else "Operation cannot be fulfilled on inferenceservices.serving.kserve.io "
                f'"{name}": the object has been modified; please apply your changes to '
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
