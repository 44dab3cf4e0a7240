"""``vroom rollout``: roll the champion out, or drive a progressive rollout.

With no subcommand it rolls the current champion out at once with the configured
backend (what a promotion does under ``rollout_strategy = immediate``). The
subcommands talk to the rollout controller through Redis, as the gateway's
``/rollout`` endpoints do: ``start`` a progressive rollout of a version, follow it
with ``status`` (redrawn until it ends on a terminal, ``--once`` for a snapshot),
``promote`` it now or ``abort`` it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from vroom_pipelines.cli import (
    StateDir,
    console,
    exit_on_error,
    kv_table,
    rollout_rows,
    settings_for,
)

if TYPE_CHECKING:
    from vroom_common.events import RolloutAction
    from vroom_rollout.progressive.requests import Snapshot

app = typer.Typer(
    name="rollout",
    help="Roll the champion out (no subcommand), or start, follow, promote or abort a "
    "progressive rollout (docs/rollouts.md).",
    no_args_is_help=False,
)

#: Who the controller records as the requester of these commands.
REQUESTED_BY = "vroom rollout"
#: How often ``status --watch`` redraws.
WATCH_EVERY_S = 1.0

Reason = Annotated[
    str | None, typer.Option("--reason", help="Recorded with the transition.", max=500)
]


@app.callback(invoke_without_command=True)
def champion(ctx: typer.Context, state_dir: StateDir = None) -> None:
    """Roll the current champion out with the configured backend (VROOM_ROLLOUT_BACKEND)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = state_dir
        return
    from vroom_rollout import make_rollout

    settings = settings_for(state_dir)
    with exit_on_error():
        result = make_rollout(settings).rollout()
    console.print(kv_table("Rollout", rollout_rows(result)))


def _at(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S")


def _number(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


def render(snapshot: Snapshot) -> list[Table]:
    """The state, the current step's signals per version, and the history."""
    state = snapshot.state
    weight = 100 if state.state == "promoted" else state.split
    rows: list[tuple[str, object]] = [
        ("state", state.state),
        ("rollout", state.id or "-"),
        ("champion", f"v{state.champion_version}" if state.champion_version else "-"),
        ("candidate", f"v{state.candidate_version}" if state.candidate_version else "-"),
        ("candidate share", f"{weight}%"),
    ]
    if state.active:
        rows.append(("step", state.step_name))
    if state.policy is not None:
        rows.append(("steps", " -> ".join(f"{s}%" for s in state.policy.steps)))
    rows += [
        ("waiting for", state.status or "-"),
        ("reason", state.reason or "-"),
        ("controller", snapshot.leader or "none holds the lease"),
    ]
    tables = [kv_table("Rollout", rows)]
    if snapshot.signals:
        signals = Table(title=f"Signals of step {state.step_name}", title_justify="left")
        for column in ("version", "requests", "error rate", "p50", "p99", "compared", "|diff| p50"):
            signals.add_column(column, justify="right")
        for version, s in sorted(snapshot.signals.items()):
            signals.add_row(
                f"v{version}",
                str(s.requests),
                f"{s.error_rate:.2%}",
                _number(s.p50_ms, " ms"),
                _number(s.p99_ms, " ms"),
                str(s.compared),
                _number(s.disagreement_median),
            )
        tables.append(signals)
    if state.history:
        history = Table(title="History", title_justify="left")
        for column in ("at (UTC)", "state", "share", "reason"):
            history.add_column(column)
        for t in state.history:
            history.add_row(_at(t.at), t.state, f"{t.weight}%", t.reason)
        tables.append(history)
    return tables


def _show(snapshot: Snapshot) -> None:
    for part in render(snapshot):
        console.print(part)


@app.command("status")
def status(
    ctx: typer.Context,
    state_dir: StateDir = None,
    watch: Annotated[
        bool | None,
        typer.Option(
            "--watch/--once",
            "-w",
            help="Redraw every second while the rollout runs (default on a terminal), or "
            "print one snapshot.",
        ),
    ] = None,
) -> None:
    """The current (or last) rollout: state, share, signals per version, history."""
    from vroom_rollout.progressive.requests import current

    settings = settings_for(state_dir or ctx.obj)
    with exit_on_error():
        snapshot = current(settings)
        if watch is None:
            watch = console.is_terminal
        if not watch:
            _show(snapshot)
            return
        from rich.console import Group
        from rich.live import Live

        with Live(Group(*render(snapshot)), console=console, auto_refresh=False) as live:
            while snapshot.state.active:
                time.sleep(WATCH_EVERY_S)
                snapshot = current(settings)
                live.update(Group(*render(snapshot)), refresh=True)


def _ask(
    ctx: typer.Context, state_dir: Path | None, action: RolloutAction, **fields: object
) -> None:
    from vroom_common.events import RolloutRequested
    from vroom_rollout.progressive.requests import current, request

    settings = settings_for(state_dir or ctx.obj)
    with exit_on_error():
        command = RolloutRequested(
            model_name=settings.model_name,
            action=action,
            requested_by=REQUESTED_BY,
            **fields,  # type: ignore[arg-type]
        )
        request(settings, command)
        _show(current(settings))


def _steps(value: str | None) -> list[int] | None:
    if value is None:
        return None
    from vroom_rollout.settings import check_steps

    try:
        return check_steps([int(part) for part in value.split(",") if part.strip()])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--steps") from exc


@app.command("start")
def start(
    ctx: typer.Context,
    version: Annotated[
        str | None,
        typer.Argument(help="The registered model version to roll out (or --version)."),
    ] = None,
    *,
    version_option: Annotated[
        str | None, typer.Option("--version", help="The version, as an option.")
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(help="Canary shares in percent, e.g. 10,50 (default: VROOM_ROLLOUT_STEPS)."),
    ] = None,
    step_seconds: Annotated[
        float | None, typer.Option(min=0.001, help="Least time per step (default: settings).")
    ] = None,
    shadow_seconds: Annotated[
        float | None, typer.Option(min=0, help="Shadow time; 0 skips shadow (default: settings).")
    ] = None,
    reason: Reason = None,
    state_dir: StateDir = None,
) -> None:
    """Start a progressive rollout of VERSION against the champion."""
    given = {v for v in (version, version_option) if v is not None}
    if len(given) != 1:
        raise typer.BadParameter(
            "give the version once: `start 7` or `start --version 7`", param_hint="VERSION"
        )
    version = given.pop()
    _ask(
        ctx,
        state_dir,
        "start",
        version=version,
        steps=_steps(steps),
        step_seconds=step_seconds,
        shadow_seconds=shadow_seconds,
        reason=reason,
    )


@app.command("promote")
def promote(ctx: typer.Context, reason: Reason = None, state_dir: StateDir = None) -> None:
    """Skip the remaining steps: make the candidate champion now."""
    _ask(ctx, state_dir, "promote", reason=reason)


@app.command("abort")
def abort(ctx: typer.Context, reason: Reason = None, state_dir: StateDir = None) -> None:
    """Roll the candidate back now; the champion keeps serving."""
    _ask(ctx, state_dir, "abort", reason=reason)
