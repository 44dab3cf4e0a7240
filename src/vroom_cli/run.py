"""``vroom run``: the main job. The local stack with a trained champion, in one command.

Starts the whole stack (detached, idempotent: Redis, MLflow, the predictor, the
feature service, the materializer, the gateway), runs the training pipeline when the
registry has no champion yet (on ``--data-dir`` when given, else on a synthetic fleet,
the embedded default) and rolls it out to the predictor, then asks the gateway for a
sample prediction and shows where everything is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vroom_cli.stack import up
from vroom_cli.stack.cli import status_table
from vroom_cli.stack.settings import StackSettings, get_stack_settings
from vroom_common.errors import DependencyUnavailable
from vroom_pipelines.cli import exit_on_error
from vroom_registry import ALIAS_CHAMPION

console = Console()


def champion_version(settings: StackSettings) -> str | None:
    """The champion's version number, or ``None`` when nothing was promoted yet."""
    from vroom_registry import ModelRegistry

    found = ModelRegistry(settings.mlflow_uri, settings.model_name).find(ALIAS_CHAMPION)
    return found.version if found else None


def sample_prediction(settings: StackSettings) -> tuple[dict[str, object], float, str]:
    """The gateway's ``POST /predict`` answer for the first vehicle of the database.

    Returns the vehicle, the predicted reservations and the version that answered.
    """
    import httpx

    from vroom_common.schemas import RAW_ATTRIBUTES
    from vroom_db import one_off_session
    from vroom_db.queries import vehicles_with_label

    with one_off_session(settings.database_url) as session:
        vehicle = vehicles_with_label(session)[0]
    url = f"{gateway_url(settings)}/predict"
    response = httpx.post(url, json={k: vehicle[k] for k in RAW_ATTRIBUTES}, timeout=10)
    if response.status_code != 200:
        raise DependencyUnavailable("gateway", f"{url}: {response.status_code} {response.text}")
    answer = response.json()
    return vehicle, float(answer["predicted_reservations"]), str(answer["model_version"])


def gateway_url(settings: StackSettings) -> str:
    from vroom_cli.stack.services import GATEWAY

    return GATEWAY.url(settings)


def ensure_champion(
    settings: StackSettings, data_dir: Path | None = None, retrain: bool = False
) -> str:
    """Start the whole stack (idempotent) and train + roll out a champion when there is
    none (or when ``retrain``); returns the champion's version."""
    from vroom_pipelines.cli import exit_on_rollout_error, print_pipeline_summary
    from vroom_pipelines.pipeline import run_pipeline
    from vroom_pipelines.progress import Progress
    from vroom_rollout import as_promotion_hook, make_rollout
    from vroom_rollout.progressive.requests import progressive_starter

    stack = up(settings)
    console.print(status_table(stack))
    version = champion_version(settings)
    if version is None or retrain:
        console.print(
            "no champion yet: running the training pipeline"
            if version is None
            else "retraining as asked"
        )
        hook = as_promotion_hook(make_rollout(settings))
        summary = run_pipeline(
            settings,
            data_dir=data_dir,
            rollout=hook,
            start_rollout=progressive_starter(settings),
            progress=Progress.for_terminal(),
        )
        print_pipeline_summary(summary, hook)
        exit_on_rollout_error(hook, summary.promote.champion_version)
        version = summary.promote.champion_version
    if version is None:
        raise DependencyUnavailable("mlflow", "the pipeline ran but no champion was promoted")
    return version


def run_command(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Train on this folder's CSV files (default: a synthetic fleet).",
            file_okay=False,
            resolve_path=True,
        ),
    ] = None,
    retrain: Annotated[
        bool, typer.Option(help="Run the pipeline even when a champion exists.")
    ] = False,
) -> None:
    """Start the local stack, train a champion if there is none, show a sample prediction."""
    settings = get_stack_settings()
    with exit_on_error():
        version = ensure_champion(settings, data_dir, retrain)
        vehicle, predicted, served_version = sample_prediction(settings)

    table = Table(title="vroom-forecast is up", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("champion", f"{settings.model_name} v{version}")
    table.add_row(
        "sample prediction",
        f"vehicle {vehicle['vehicle_id']}: {predicted:.2f} reservations "
        f"(observed: {vehicle['num_reservations']}; served by v{served_version})",
    )
    gateway = gateway_url(settings)
    table.add_row("API (gateway)", gateway)
    table.add_row("API docs", f"{gateway}/docs")
    table.add_row(
        "predictor (OIP v2)", f"{settings.predictor_url} · gRPC {settings.predictor_grpc_target}"
    )
    table.add_row("MLflow UI", settings.mlflow_uri)
    table.add_row("Redis", settings.redis_url)
    table.add_row("state", str(settings.state_dir))
    table.add_row("stop with", "vroom down")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
