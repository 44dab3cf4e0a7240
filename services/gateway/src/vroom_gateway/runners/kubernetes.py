"""The ``kubernetes`` runner: a pipeline as a Job made from the chart's suspended CronJob."""

from __future__ import annotations

import asyncio
import copy
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import structlog
from kubernetes import client as kube_client

from vroom_common import events
from vroom_common.errors import Conflict
from vroom_common.events import DAG_MATERIALIZE, DAG_PIPELINE, DagId
from vroom_gateway.runners.base import RUN_ID_ENV, command_of
from vroom_gateway.schemas import TriggeredRun
from vroom_gateway.settings import GatewaySettings
from vroom_kube import KubeApi, namespaced

log = structlog.get_logger(__name__)

#: Labels and annotations the runner puts on the Jobs it creates.
LABEL_DAG_ID: Final = "vroom-forecast.io/dag-id"
LABEL_DAG_RUN_ID: Final = "vroom-forecast.io/dag-run-id"
ANNOTATION_DAG_RUN_ID: Final = "vroom-forecast.io/dag-run-id"
#: What ``kubectl create job --from=cronjob/...`` marks its Jobs with.
ANNOTATION_INSTANTIATE: Final = "cronjob.kubernetes.io/instantiate"
#: Recorded in ``metadata.managedFields`` as the writer of the Jobs.
KUBE_FIELD_MANAGER: Final = "vroom-gateway"
#: Longest Job name (its ``job-name`` pod label must be a valid label value).
MAX_NAME: Final = 63

_LABEL_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_INVALID = re.compile(r"[^a-z0-9-]+")


def label_value(text: str) -> str:
    """``text`` as a valid label value (≤ 63 characters of ``[A-Za-z0-9._-]``,
    alphanumeric at both ends)."""
    value = _LABEL_INVALID.sub("-", text)[:MAX_NAME]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def job_name(cronjob: str, now: datetime, suffix: str) -> str:
    """A DNS-1123 label ≤ 63 characters: ``<cronjob>-<UTC yyyymmddhhmmss>-<suffix>``."""
    tail = f"-{now.astimezone(UTC):%Y%m%d%H%M%S}-{suffix}"
    prefix = _NAME_INVALID.sub("-", cronjob.lower())[: MAX_NAME - len(tail)].strip("-")
    return f"{prefix or 'pipeline'}{tail}"


def job_is_active(job: dict[str, Any]) -> bool:
    """Running pods, or not finished yet (no ``Complete``/``Failed`` condition)."""
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = job.get("status") or {}
    if int(status.get("active") or 0) > 0:
        return True
    return not any(
        isinstance(c, dict)
        and c.get("type") in ("Complete", "Failed")
        and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def job_from_cronjob(
    cronjob: dict[str, Any], dag_id: str, run_id: str, name: str
) -> dict[str, Any]:
    """The Job ``kubectl create job --from=cronjob/...`` would make, labelled with the
    DAG and run, with ``VROOM_DAG_RUN_ID`` in every container's environment."""
    metadata = cronjob.get("metadata") or {}
    template = copy.deepcopy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    template_meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    run_labels = {LABEL_DAG_ID: dag_id, LABEL_DAG_RUN_ID: label_value(run_id)}

    pod_template = spec.setdefault("template", {})
    pod_meta = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **run_labels}
    pod_spec = pod_template.setdefault("spec", {})
    for container in pod_spec.get("containers") or []:
        env = [e for e in container.get("env") or [] if e.get("name") != RUN_ID_ENV]
        env.append({"name": RUN_ID_ENV, "value": run_id})
        container["env"] = env

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": metadata.get("namespace"),
            "labels": {**(template_meta.get("labels") or {}), **run_labels},
            "annotations": {
                **(template_meta.get("annotations") or {}),
                ANNOTATION_INSTANTIATE: "manual",
                ANNOTATION_DAG_RUN_ID: run_id,
            },
            "ownerReferences": [
                {
                    "apiVersion": cronjob.get("apiVersion") or "batch/v1",
                    "kind": "CronJob",
                    "name": metadata.get("name"),
                    "uid": metadata.get("uid"),
                    "controller": True,
                }
            ],
        },
        "spec": spec,
    }


class KubernetesRunner:
    """Pipelines as Kubernetes Jobs made from the chart's suspended CronJobs.

    Args:
        settings: ``kube_namespace`` and the CronJob names
            (``kube_materialize_cronjob``, ``kube_pipeline_cronjob``).
        api_client: A ``kubernetes`` client; default: in-cluster config, else the
            kubeconfig (loaded at the first trigger).
    """

    name: str = "kubernetes"

    def __init__(
        self, settings: GatewaySettings, api_client: kube_client.ApiClient | None = None
    ) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self.cronjobs: dict[str, str] = {
            DAG_MATERIALIZE: settings.kube_materialize_cronjob,
            DAG_PIPELINE: settings.kube_pipeline_cronjob,
        }
        self.kube = KubeApi(KUBE_FIELD_MANAGER, "the gateway's service account", api_client)
        self._lock = asyncio.Lock()

    def _call(
        self,
        what: str,
        rbac: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.kube.request(
            what, method, path, rbac=rbac, namespace=self.namespace, query=query, body=body
        )

    def _trigger(self, dag_id: DagId) -> TriggeredRun:
        cronjob_name = self.cronjobs[dag_id]
        base = f"/apis/batch/v1{namespaced(self.namespace)}"
        cronjob = self._call(
            f"get CronJob {self.namespace}/{cronjob_name} (the template of {dag_id}; "
            "check kube_namespace and the kube_*_cronjob settings)",
            "get on cronjobs.batch",
            "GET",
            f"{base}/cronjobs/{quote(cronjob_name, safe='')}",
        )
        jobs = self._call(
            f"list Jobs of {dag_id} in namespace {self.namespace}",
            "list on jobs.batch",
            "GET",
            f"{base}/jobs",
            query=[("labelSelector", f"{LABEL_DAG_ID}={dag_id}")],
        )
        for job in jobs.get("items") or []:
            if isinstance(job, dict) and job_is_active(job):
                meta = job.get("metadata") or {}
                run = (meta.get("annotations") or {}).get(ANNOTATION_DAG_RUN_ID, "unknown")
                raise Conflict(
                    f"pipeline {dag_id} is already running (run {run}, Job "
                    f"{self.namespace}/{meta.get('name')}); wait for its pipeline-completed event"
                )
        now = datetime.now(UTC)
        run_id = events.new_run_id(now)
        name = job_name(cronjob_name, now, secrets.token_hex(2))
        body = job_from_cronjob(cronjob, dag_id, run_id, name)
        body["metadata"]["namespace"] = self.namespace
        self._call(
            f"create Job {self.namespace}/{name} from CronJob {cronjob_name}",
            "create on jobs.batch",
            "POST",
            f"{base}/jobs",
            body=body,
        )
        log.info(
            "pipeline job created",
            dag_id=dag_id,
            dag_run_id=run_id,
            job=f"{self.namespace}/{name}",
            cronjob=cronjob_name,
        )
        return TriggeredRun(dag_id=dag_id, dag_run_id=run_id)

    async def trigger(self, dag_id: DagId) -> TriggeredRun:
        command_of(dag_id)
        # Serialized in this process so two requests cannot both see "no active Job".
        async with self._lock:
            return await asyncio.to_thread(self._trigger, dag_id)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.kube.close)
