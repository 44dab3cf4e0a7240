"""``vroom up``, ``vroom down`` and ``vroom status``."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vroom_cli.stack.control import StackStatus, down, status, up
from vroom_cli.stack.services import SERVICES
from vroom_cli.stack.settings import StackSettings, stack_settings_for
from vroom_pipelines.cli import StateDir, exit_on_error

_COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def status_table(current: StackStatus) -> Table:
    title = "vroom local stack" + ("" if current.supervisor_running else " (not running)")
    table = Table(title=title)
    for column in ("service", "state", "pid", "port", "healthy", "restarts", "last exit", "url"):
        table.add_column(column)
    for service in current.services:
        healthy = Text("yes", style="green") if service.healthy else Text("no", style="red")
        table.add_row(
            service.name,
            service.state,
            str(service.pid or "-"),
            ", ".join(str(port) for port in service.ports),
            healthy,
            str(service.restarts),
            service.last_exit or "-",
            service.url,
        )
    return table


class _Stop(Exception):
    """SIGTERM arrived: leave the log loop like Ctrl-C does."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> NoReturn:
    raise _Stop


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let the shutdown finish even if Ctrl-C is pressed again."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_sizes(settings: StackSettings) -> dict[str, int]:
    sizes = {}
    for spec in SERVICES:
        path = spec.log_path(settings)
        sizes[spec.name] = path.stat().st_size if path.exists() else 0
    return sizes


def follow_logs(
    settings: StackSettings,
    names: Sequence[str],
    offsets: dict[str, int],
    console: Console,
    poll: float = 0.2,
) -> NoReturn:
    """Print new lines of the services' logs, ``name | line``, until interrupted."""
    specs = [spec for spec in SERVICES if spec.name in names]
    width = max((len(spec.name) for spec in specs), default=0)
    partial = {spec.name: b"" for spec in specs}
    while True:
        for index, spec in enumerate(specs):
            path = spec.log_path(settings)
            try:
                size = path.stat().st_size
            except OSError:
                continue
            offset = offsets.get(spec.name, 0)
            if size < offset:  # rotated by supervisord: start the new file from the top
                offset = 0
            if size == offset:
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                data = partial[spec.name] + handle.read()
                offsets[spec.name] = handle.tell()
            *lines, partial[spec.name] = data.split(b"\n")
            style = _COLORS[index % len(_COLORS)]
            for line in lines:
                console.print(
                    Text(f"{spec.name:<{width}} | ", style=style),
                    Text(line.decode("utf-8", "replace").rstrip("\r")),
                    sep="",
                    highlight=False,
                    soft_wrap=True,
                )
        time.sleep(poll)


def _report_up(console: Console, result: StackStatus) -> None:
    if result.started:
        console.print(f"started: {', '.join(result.started)}")
    else:
        console.print("nothing to start: every service already runs and is healthy")


def up_command(
    state_dir: StateDir = None,
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Start the stack in the background and return."),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for each service to turn healthy."),
    ] = None,
) -> None:
    """Start the local stack (supervisord, Redis, MLflow, ...), health-checked.

    Without --detach, follow the services' logs until Ctrl-C or SIGTERM, then stop
    everything.
    """
    settings = stack_settings_for(state_dir)
    console = Console()
    if detach:
        with exit_on_error():
            result = up(settings, timeout=timeout)
        _report_up(console, result)
        console.print(status_table(result))
        return
    offsets = _log_sizes(settings)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with exit_on_error():
            result = up(settings, timeout=timeout)
        _report_up(console, result)
        console.print(status_table(result))
        console.print("following the logs; Ctrl-C stops the stack", style="dim")
        follow_logs(settings, [service.name for service in result.services], offsets, console)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        with _signals_ignored():
            console.print("stopping the stack", style="dim")
            down(settings)
            console.print("stopped")


def down_command(state_dir: StateDir = None) -> None:
    """Stop every service of the local stack and supervisord."""
    with exit_on_error():
        result = down(stack_settings_for(state_dir))
    console = Console()
    if result.stopped:
        console.print(f"stopped: {', '.join(result.stopped)}")
    else:
        console.print("nothing was running")


def status_command(state_dir: StateDir = None) -> None:
    """Show each service's state, pid, port, health and URL; exit 1 unless all are healthy."""
    with exit_on_error():
        current = status(stack_settings_for(state_dir))
    Console().print(status_table(current))
    if not current.healthy:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``up``, ``down`` and ``status`` to the ``vroom`` command."""
    app.command("up")(up_command)
    app.command("down")(down_command)
    app.command("status")(status_command)
