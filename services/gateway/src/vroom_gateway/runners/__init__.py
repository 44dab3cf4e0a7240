"""Pipeline runners: how ``/materialize`` and ``/train`` start a pipeline run.

Three backends, chosen by ``GatewaySettings.pipeline_runner`` (:func:`make_runner`):

``local``
    A background process, ``python -m vroom_pipelines <command> --dag-run-id <id>``,
    with the gateway's settings in its environment and its output in
    ``<state_dir>/logs/pipelines/<dag_id>/<run id>.log``. One run per DAG at a time
    in this gateway process (a second trigger raises :class:`Conflict`); different
    DAGs may run together. The pipeline publishes its own ``pipeline-completed``
    event; when a child ends without having published it (killed by a signal,
    crashed at import, Redis down at the time), the runner publishes it instead, so
    clients always learn the end. At shutdown (:meth:`LocalRunner.aclose`) running
    children get SIGTERM (their whole process group), then SIGKILL after a grace
    period: a stopped gateway leaves no orphan pipelines behind (a gateway killed
    with SIGKILL does: children run in their own session, so give the supervisor a
    stop timeout longer than ``stop_grace_s``). Run once per gateway process: with
    several workers, use the kubernetes or airflow runner.
``kubernetes``
    A Job instantiated from a suspended CronJob's ``jobTemplate`` (like ``kubectl
    create job --from=cronjob/<name>``), refused while a Job of the same DAG is
    still active. RBAC needed: ``get`` on ``cronjobs`` and ``list`` + ``create`` on
    ``jobs`` (group ``batch``) in ``kube_namespace``.
``airflow``
    A DAG run through Airflow 2's stable REST API
    (``POST /api/v1/dags/{dag_id}/dagRuns``), with HTTP basic auth when configured.
    The body names the run id and an empty ``conf``; ``logical_date`` is left out, so
    Airflow sets it to now (Airflow 3's ``/api/v2`` is not supported).

Every backend answers with the run id it started (:class:`TriggeredRun`); the end
of the run arrives as a ``pipeline-completed`` event on ``Stream.PIPELINES``.
Errors are the named ``vroom_common.errors`` only.
"""

from __future__ import annotations

from vroom_gateway.runners.airflow import AirflowRunner, airflow_api_base
from vroom_gateway.runners.base import (
    PIPELINE_COMMANDS,
    RUN_ID_ENV,
    PipelineRunner,
    RunnerName,
    command_of,
    safe_file_name,
)
from vroom_gateway.runners.kubernetes import (
    KubernetesRunner,
    job_from_cronjob,
    job_name,
    label_value,
)
from vroom_gateway.runners.local import CommandFactory, LocalRunner, pipeline_command
from vroom_gateway.schemas import TriggeredRun
from vroom_gateway.settings import GatewaySettings

__all__ = [
    "PIPELINE_COMMANDS",
    "RUN_ID_ENV",
    "AirflowRunner",
    "CommandFactory",
    "KubernetesRunner",
    "LocalRunner",
    "PipelineRunner",
    "RunnerName",
    "TriggeredRun",
    "airflow_api_base",
    "command_of",
    "job_from_cronjob",
    "job_name",
    "label_value",
    "make_runner",
    "pipeline_command",
    "safe_file_name",
]


def make_runner(settings: GatewaySettings) -> PipelineRunner:
    """The runner ``settings.pipeline_runner`` names (``airflow`` whenever
    ``airflow_url`` is set). Nothing connects until the first trigger."""
    if settings.pipeline_runner == "airflow":
        return AirflowRunner(settings)
    if settings.pipeline_runner == "kubernetes":
        return KubernetesRunner(settings)
    return LocalRunner(settings)
