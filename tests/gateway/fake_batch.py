"""A small fake of the Kubernetes ``batch/v1`` API: CronJobs to read, Jobs to list and
create, every request recorded (a sibling of ``tests/rollout/fake_kube.py``).

It checks what a real API server would reject: a Job's name must be a DNS-1123 label
of at most 63 characters, label values must be valid, the body's namespace must match
the path's, and a name already taken answers ``409``. ``fail`` makes one request kind
(``"get-cronjob"``, ``"list-jobs"``, ``"create-job"``) answer a status instead.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fake_http import Recorded, serve_json

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PATH = re.compile(
    r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/(?P<plural>cronjobs|jobs)(/(?P<name>[^/]+))?$"
)
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    422: "Invalid",
    500: "InternalError",
}


def cronjob(namespace: str, name: str, uid: str = "cj-uid-1") -> dict[str, Any]:
    """A suspended CronJob as the chart would install it."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "5"},
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": True,
            "jobTemplate": {
                "metadata": {
                    "labels": {"app.kubernetes.io/name": "vroom-forecast", "component": "pipeline"},
                    "annotations": {"team": "ml"},
                },
                "spec": {
                    "backoffLimit": 0,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {
                        "metadata": {"labels": {"component": "pipeline"}},
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "pipeline",
                                    "image": "vroom-pipelines:dev",
                                    "args": ["pipeline"],
                                    "env": [
                                        {
                                            "name": "VROOM_REDIS_URL",
                                            "value": "redis://redis:6379/0",
                                        },
                                        {"name": "VROOM_DAG_RUN_ID", "value": "stale"},
                                    ],
                                    "resources": {"requests": {"cpu": 1, "memory": "1Gi"}},
                                },
                                {"name": "sidecar", "image": "busybox"},
                            ],
                        },
                    },
                },
            },
        },
    }


def job(
    namespace: str, name: str, dag_id: str, run_id: str, status: dict[str, Any]
) -> dict[str, Any]:
    """A Job of ``dag_id`` with the given ``status``."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"vroom-forecast.io/dag-id": dag_id},
            "annotations": {"vroom-forecast.io/dag-run-id": run_id},
        },
        "spec": {},
        "status": status,
    }


@dataclass
class FakeBatch:
    namespace: str
    cronjobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(  # noqa: PLR0911 (one answer per request kind)
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        match = _PATH.match(path)
        if match is None:
            return self._status(404, f"the server could not find the requested resource ({path})")
        ns, plural, name = match["ns"], match["plural"], match["name"]
        kind = {
            ("GET", "cronjobs", True): "get-cronjob",
            ("GET", "jobs", False): "list-jobs",
            ("POST", "jobs", False): "create-job",
        }.get((method, plural, name is not None))
        if kind is None:
            return self._status(405, f"{method} {path} is not served by the fake")
        if kind in self.fail:
            return self._status(self.fail[kind], f"scripted failure of {kind}")
        with self._lock:
            if kind == "get-cronjob":
                found = self.cronjobs.get(name) if ns == self.namespace else None
                if found is None:
                    return self._status(404, f'cronjobs.batch "{name}" not found')
                return 200, copy.deepcopy(found)
            if kind == "list-jobs":
                selector = dict(
                    item.split("=", 1)
                    for s in query.get("labelSelector", [])
                    for item in s.split(",")
                )
                items = [
                    copy.deepcopy(j)
                    for j in self.jobs
                    if j["metadata"]["namespace"] == ns
                    and all(
                        j["metadata"].get("labels", {}).get(k) == v for k, v in selector.items()
                    )
                ]
                return 200, {
                    "apiVersion": "batch/v1",
                    "kind": "JobList",
                    "metadata": {},
                    "items": items,
                }
            return self._create(ns, body)

    def _create(self, ns: str, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or body.get("kind") != "Job":
            return self._status(400, "the body is not a Job")
        meta = body.get("metadata") or {}
        name = meta.get("name", "")
        problems = []
        if not (_DNS_LABEL.match(name) and len(name) <= 63):
            problems.append(
                f"metadata.name: Invalid value: {name!r}: must be a DNS-1123 label <= 63"
            )
        if meta.get("namespace") not in (None, ns):
            problems.append("metadata.namespace: does not match the namespace of the request")
        labels = {
            **(meta.get("labels") or {}),
            **(((body.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
                "labels", {}
            ),
        }
        for key, value in labels.items():
            if not (isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.match(value)):
                problems.append(f"metadata.labels: Invalid value: {value!r} (label {key})")
        if problems:
            return self._status(422, "; ".join(problems))
        if any(
            j["metadata"]["name"] == name and j["metadata"]["namespace"] == ns for j in self.jobs
        ):
            return self._status(409, f'jobs.batch "{name}" already exists')
        created = copy.deepcopy(body)
        created["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion="1")
        created["status"] = {}
        self.jobs.append(created)
        return 201, copy.deepcopy(created)

    @staticmethod
    def _status(code: int, message: str) -> tuple[int, Any]:
        return code, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": _REASONS.get(code, "Unknown"),
            "code": code,
        }


@contextmanager
def serve(fake: FakeBatch) -> Iterator[FakeBatch]:
    """Run ``fake`` on a free loopback port (``fake.url``) for the block."""
    with serve_json(fake, lambda r: fake.handle(r.method, r.path, r.query, r.body)) as served:
        yield served
