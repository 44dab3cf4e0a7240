"""The ``vroom`` command: the local stack and the batch pipelines."""

from __future__ import annotations

import typer

from vroom_cli import bench, monitor, run, stack
from vroom_cli.stack.settings import get_stack_settings
from vroom_common.logs import configure_logging
from vroom_pipelines import cli as pipelines

app = typer.Typer(
    name="vroom",
    no_args_is_help=True,
    help="vroom-forecast: run the local stack and the batch pipelines.",
)


@app.callback()
def main() -> None:
    """vroom-forecast: reservation forecasts for car-sharing listings."""
    settings = get_stack_settings()
    configure_logging(settings.log_format, settings.log_level)


stack.register(app)

# pipeline commands are registered below
pipelines.register(app)
run.register(app)
bench.register(app)
monitor.register(app)
