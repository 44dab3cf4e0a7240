"""``vroom monitor``: the served models' drift, from the gateway's ``GET /monitoring``.

A table of the population stability index per feature (and of the predictions), then a
chart of the most drifted distribution, training against live share bin by bin. Reads
the local stack's gateway unless ``--url`` names another (with ``--api-key`` when the
gateway protects reads).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vroom_cli.run import gateway_url
from vroom_cli.stack.settings import stack_settings_for
from vroom_features.drift import PREDICTION
from vroom_pipelines.cli import StateDir

#: PSI below this reads as stable (the usual rule of thumb; docs/observability.md).
STABLE_PSI = 0.1
#: Width of the longest bar of a distribution chart, in characters.
BAR_WIDTH = 40


def fetch(url: str, api_key: str | None, timeout: float = 10.0) -> dict[str, Any]:
    """The gateway's monitoring report; exits with its reason when it cannot be read."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/monitoring", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise typer.BadParameter(f"the gateway at {url} does not answer: {exc}") from exc
    if response.status_code != 200:
        detail = response.json().get("detail") if response.content else ""
        typer.echo(f"GET /monitoring: {response.status_code} {detail}", err=True)
        raise typer.Exit(1)
    body: dict[str, Any] = response.json()
    return body


def _verdict(score: float | None, threshold: float) -> Text:
    if score is None:
        return Text("-", style="dim")
    style = "green" if score < STABLE_PSI else "yellow" if score <= threshold else "bold red"
    return Text(f"{score:.3f}", style=style)


def table(report: dict[str, Any]) -> Table:
    """One row per feature (and the prediction), one column per served model."""
    models = report["models"]
    threshold = float(report["threshold"])
    grid = Table(title=f"drift (PSI; above {threshold:g} is drifted)")
    grid.add_column("feature")
    for model in models:
        grid.add_column(f"{model['model']} v{model['version']}", justify="right")
    names = list(dict.fromkeys(name for m in models for name in m["distributions"]))
    for name in names:
        grid.add_row(name, *[_verdict((m["psi"] or {}).get(name), threshold) for m in models])
    grid.add_row(
        Text("live rows", style="dim"),
        *[Text(f"{m['window_rows']} (scored from {m['min_rows']})", style="dim") for m in models],
    )
    return grid


def most_drifted(report: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The model and feature with the highest PSI (None before any window is scored)."""
    scored = [
        (score, model, name)
        for model in report["models"]
        for name, score in (model["psi"] or {}).items()
    ]
    if not scored:
        return None
    _, model, name = max(scored, key=lambda item: item[0])
    return model, name


def chart(model: dict[str, Any], name: str) -> Table:
    """Training and live shares of ``name``'s bins as bars."""
    distribution = model["distributions"][name]
    score = (model["psi"] or {}).get(name)
    title = f"{name} ({model['model']} v{model['version']}, PSI {score:.3f})"
    grid = Table(title=title, show_edge=False)
    grid.add_column("bin")
    grid.add_column("training", no_wrap=True)
    grid.add_column("live", no_wrap=True)
    top = max([*distribution["train"], *distribution["live"], 1e-9])
    live = distribution["live"] or [0.0] * len(distribution["train"])
    for label, train_share, live_share in zip(
        distribution["bins"], distribution["train"], live, strict=True
    ):
        grid.add_row(
            label,
            Text(_bar(train_share, top), style="cyan"),
            Text(_bar(live_share, top), style="magenta"),
        )
    return grid


def _bar(share: float, top: float) -> str:
    return f"{'█' * round(BAR_WIDTH * share / top):<{BAR_WIDTH}} {share:6.1%}"


def monitor_command(
    state_dir: StateDir = None,
    url: Annotated[
        str | None, typer.Option(help="A gateway's base URL (default: the local stack's).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="VROOM_API_KEY", help="Sent as a bearer token when given."),
    ] = None,
    feature: Annotated[
        str | None,
        typer.Option(help=f"Chart this feature (or '{PREDICTION}'; default: the most drifted)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Drift of the served models' live inputs against their training data."""
    report = fetch(url or gateway_url(stack_settings_for(state_dir)), api_key)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    if not report["models"]:
        console.print("no served model has a drift reference (train a model to get one)")
        return
    console.print(table(report))
    pick = most_drifted(report)
    if feature is not None:
        models = [m for m in report["models"] if feature in m["distributions"] and m["psi"]]
        pick = (models[0], feature) if models else None
        if pick is None:
            raise typer.BadParameter(f"no scored distribution named {feature!r}")
    if pick is None:
        console.print("no window is scored yet: the served models need more live rows")
        return
    console.print(chart(*pick))
    if report["drifted"]:
        console.print(Text(f"drifted: {', '.join(report['drifted'])}", style="bold red"))


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)
