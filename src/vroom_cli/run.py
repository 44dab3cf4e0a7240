"""``vroom run``: the main job. The local stack with a trained champion, in one command.

Starts the stack (detached, idempotent), runs the training pipeline when the registry
has no champion yet (on ``--data-dir`` when given, else on a synthetic fleet, the
embedded default), then shows a sample prediction and where everything is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vroom_cli.stack import up
from vroom_cli.stack.cli import status_table
from vroom_common.registry import ALIAS_CHAMPION, champion_uri
from vroom_common.settings import Settings, get_settings
from vroom_pipelines.cli import exit_on_error

console = Console()


def champion_version(settings: Settings) -> str | None:
    """The champion's version number, or ``None`` when nothing was promoted yet."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        version = MlflowClient(settings.mlflow_uri).get_model_version_by_alias(
            settings.model_name, ALIAS_CHAMPION
        )
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return str(version.version)


def sample_prediction(settings: Settings) -> tuple[dict[str, object], float]:
    """The champion's prediction for the first vehicle in the database.

    Runs the served format (ONNX) straight from the registry; the predictor service
    takes this over when it exists.
    """
    import mlflow
    import numpy as np
    import onnxruntime as ort
    import pandas as pd

    from vroom_db import make_engine, make_session_factory
    from vroom_db.queries import vehicles_with_label
    from vroom_features import compute_features
    from vroom_features.contract import INPUT_NAME, ONNX_FILE, OUTPUT_NAME

    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        vehicle = vehicles_with_label(session)[0]
    engine.dispose()
    mlflow.set_tracking_uri(settings.mlflow_uri)
    local = Path(mlflow.artifacts.download_artifacts(champion_uri(settings.model_name)))
    session_ = ort.InferenceSession(str(local / ONNX_FILE), providers=["CPUExecutionProvider"])
    features = compute_features(pd.DataFrame([vehicle])).to_numpy(dtype=np.float32)
    predicted = float(session_.run([OUTPUT_NAME], {INPUT_NAME: features})[0].ravel()[0])
    return vehicle, predicted


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
    from vroom_pipelines.cli import print_pipeline_summary
    from vroom_pipelines.pipeline import run_pipeline
    from vroom_pipelines.progress import Progress

    settings = get_settings()
    with exit_on_error():
        stack = up(settings)
        console.print(status_table(stack))
        version = champion_version(settings)
        if version is None or retrain:
            console.print(
                "no champion yet: running the training pipeline"
                if version is None
                else "retraining as asked"
            )
            summary = run_pipeline(settings, data_dir=data_dir, progress=Progress.for_terminal())
            print_pipeline_summary(summary)
            version = summary.promote.champion_version
        vehicle, predicted = sample_prediction(settings)

    table = Table(title="vroom-forecast is up", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("champion", f"{settings.model_name} v{version}")
    table.add_row(
        "sample prediction",
        f"vehicle {vehicle['vehicle_id']}: {predicted:.2f} reservations "
        f"(observed: {vehicle['num_reservations']})",
    )
    table.add_row("MLflow UI", settings.mlflow_uri)
    table.add_row("Redis", settings.redis_url)
    table.add_row("state", str(settings.state_dir))
    table.add_row("stop with", "vroom down")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
