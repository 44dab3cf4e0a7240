"""What every pipeline runner shares: the protocol, the DAGs' commands, run-id files."""

from __future__ import annotations

import re
from typing import Final, Literal, Protocol, runtime_checkable

from vroom_common.errors import NotFound
from vroom_common.events import DAG_MATERIALIZE, DAG_PIPELINE, DagId
from vroom_gateway.schemas import TriggeredRun

#: The ``vroom_pipelines`` command that runs each DAG.
PIPELINE_COMMANDS: Final[dict[str, str]] = {
    DAG_MATERIALIZE: "materialize",
    DAG_PIPELINE: "pipeline",
}
#: Environment variable (and CLI option ``--dag-run-id``) carrying the run id.
RUN_ID_ENV: Final = "VROOM_DAG_RUN_ID"

RunnerName = Literal["local", "kubernetes", "airflow"]


@runtime_checkable
class PipelineRunner(Protocol):
    """Starts pipeline runs; the run itself reports its end as ``pipeline-completed``."""

    name: str

    async def trigger(self, dag_id: DagId) -> TriggeredRun:
        """Start a run of ``dag_id``; ``Conflict`` when one is already running."""
        ...

    async def aclose(self) -> None:
        """Release what the runner holds (connections; local: running children)."""
        ...


def command_of(dag_id: str) -> str:
    try:
        return PIPELINE_COMMANDS[dag_id]
    except KeyError:  # DagId is a Literal; this guards callers that bypass the type.
        raise NotFound(
            f"unknown pipeline {dag_id!r}; known: {', '.join(PIPELINE_COMMANDS)}"
        ) from None


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(run_id: str) -> str:
    """``run_id`` as a file name: runs of other characters become ``_``."""
    name = _UNSAFE_FILE_CHARS.sub("_", run_id).strip("._") or "run"
    return name[:200]
