"""The pipeline commands of the ``vroom`` CLI: seed, materialize, train, promote, rollout,
pipeline.

Each command shows progress on long steps, ends with a one-screen summary, and on
failure prints one clear message and exits non-zero (no traceback for errors we
name; a traceback only for bugs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from vroom_common.errors import VroomError
from vroom_common.events import DAG_MATERIALIZE
from vroom_pipelines.progress import Progress
from vroom_pipelines.settings import PipelineSettings, get_pipeline_settings

if TYPE_CHECKING:
    from vroom_pipelines.materialize import MaterializeSummary
    from vroom_pipelines.pipeline import PipelineSummary
    from vroom_pipelines.promote import PromotionResult
    from vroom_pipelines.seed import SeedSummary
    from vroom_pipelines.train import TrainResult
    from vroom_rollout import PromotionHook, RolloutResult

# The pipeline modules pull in pandas, scikit-learn, MLflow and Feast (seconds of
# imports). Commands import them when they run, so `vroom --help` and the local-stack
# commands start at once.

console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with vehicles.csv and reservations.csv.",
        file_okay=False,
        resolve_path=True,
    ),
]
Synthetic = Annotated[
    int | None,
    typer.Option("--synthetic", min=10, max=1_000_000, help="Generate a fleet of N vehicles."),
]
RandomSeed = Annotated[int, typer.Option("--seed", help="Random seed of the synthetic fleet.")]
RunId = Annotated[
    str | None,
    typer.Option(
        "--dag-run-id",
        envvar="VROOM_DAG_RUN_ID",
        help="Run id to report in pipeline-completed (default: manual__<time>).",
    ),
]


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Errors we name become one red line on stderr and exit code 1 (no traceback)."""
    try:
        yield
    except VroomError as exc:
        # soft_wrap: the message stays one greppable line; a log tail keeps its lines.
        err_console.print(Text(f"error: {exc.message}", style="bold red"), soft_wrap=True)
        raise typer.Exit(1) from exc


def kv_table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def _seed_rows(s: SeedSummary) -> list[tuple[str, object]]:
    return [
        ("source", s.source),
        ("vehicles", s.vehicles),
        ("reservations", s.reservations),
        ("vehicles without reservations", s.vehicles_without_reservations),
        ("inserted / updated / removed", f"{s.inserted} / {s.updated} / {s.removed}"),
        ("seconds", round(s.duration_s, 2)),
    ]


def _materialize_rows(m: MaterializeSummary) -> list[tuple[str, object]]:
    return [
        ("vehicles", m.vehicles),
        ("fleet rows (offline store)", m.fleet_rows),
        ("new arrivals", m.new_arrivals),
        ("online store rows", m.online_rows),
        ("offline store", f"{m.offline_path} ({m.offline_bytes:,} bytes)"),
        ("seconds", round(m.duration_s, 2)),
    ]


def _train_rows(t: TrainResult) -> list[tuple[str, object]]:
    top = sorted(t.feature_importances.items(), key=lambda kv: -kv[1])
    return [
        ("model version", t.model_version),
        ("run id", t.run_id),
        ("cv_mae_mean ± std", f"{t.cv_mae_mean:.4f} ± {t.cv_mae_std:.4f}"),
        ("per-fold MAE", ", ".join(f"{m:.3f}" for m in t.cv_mae_folds)),
        ("train MAE / RMSE / R²", f"{t.train_mae:.3f} / {t.train_rmse:.3f} / {t.train_r2:.3f}"),
        ("features", t.params["features"]),
        ("min_samples_leaf", t.params["min_samples_leaf"]),
        ("feature importances", ", ".join(f"{k} {v:.2f}" for k, v in top)),
        ("ONNX max |diff| vs sklearn", f"{t.onnx_max_abs_diff:.1e}"),
        ("rows", t.n_rows),
        ("seconds", round(t.duration_s, 1)),
    ]


def _promote_rows(p: PromotionResult) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("outcome", p.outcome),
        ("reason", p.reason),
        ("candidate", f"v{p.candidate_version} (cv_mae_mean {p.candidate_score:.4f})"),
        ("champion now", f"v{p.champion_version}" if p.champion_version else "none"),
        ("model-promoted event", "published" if p.event_published else "not published"),
    ]
    c = p.comparison
    if c is not None:
        rows += [
            ("re-scored on", f"{c.folds} shuffled folds of today's offline store, both models"),
            ("candidate / champion MAE", f"{c.candidate_mae:.4f} / {c.champion_mae:.4f}"),
            (
                "paired test",
                f"difference {c.mean_difference:+.4f}, corrected t {c.t_statistic:.2f}, "
                f"one-sided p {c.p_value:.3f} (promote below {c.alpha:g})",
            ),
        ]
    if p.rollout_id:
        rows.append(
            (
                "progressive rollout",
                f"{p.rollout_id}: follow it with `vroom rollout status` or GET /rollout",
            )
        )
    return rows


def rollout_rows(result: RolloutResult) -> list[tuple[str, object]]:
    version = f"v{result.version}" if result.version else "the champion"
    return [("rollout", f"{result.backend}: {result.status} ({version}): {result.detail}")]


def _hook_rows(hook: PromotionHook) -> list[tuple[str, object]]:
    if hook.error is not None:
        return [("rollout", f"{hook.rollout.backend}: FAILED (see below)")]
    return rollout_rows(hook.result) if hook.result else []


def exit_on_rollout_error(hook: PromotionHook, champion_version: str | None) -> None:
    """After a promotion whose rollout failed: say so, keep the promotion, exit 1."""
    if hook.error is None:
        return
    err_console.print(
        Text(f"error: rollout failed: {hook.error.message}", style="bold red"), soft_wrap=True
    )
    err_console.print(
        f"The promotion stands (v{champion_version} is champion); retry with `vroom rollout`."
    )
    raise typer.Exit(1)


def settings_for(state_dir: Path | None) -> PipelineSettings:
    """The settings, with the state directory of ``--state-dir`` when given."""
    settings = get_pipeline_settings()
    return settings.with_overrides(state_dir=state_dir) if state_dir is not None else settings


StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Directory holding all local state (default: VROOM_STATE_DIR or .vroom).",
        file_okay=False,
    ),
]


def seed(
    data_dir: DataDir = None,
    synthetic: Synthetic = None,
    random_seed: RandomSeed = 42,
    state_dir: StateDir = None,
) -> None:
    """Load the fleet into the database from CSV files, or generate a synthetic one."""
    if (data_dir is None) == (synthetic is None):
        raise typer.BadParameter("give exactly one of --data-dir DIR or --synthetic N")
    from vroom_pipelines.seed import seed_from_dir, seed_synthetic

    settings = settings_for(state_dir)
    with exit_on_error(), Progress.for_terminal().step("Validating and loading the fleet"):
        summary = (
            seed_from_dir(settings, data_dir)
            if data_dir is not None
            else seed_synthetic(settings, synthetic or 0, random_seed)
        )
    console.print(kv_table("Seeded", _seed_rows(summary)))


def migrate_cmd(state_dir: StateDir = None) -> None:
    """Bring the vehicle database's schema to the newest migration (a no-op when it is)."""
    from vroom_db import make_engine, migrate

    settings = settings_for(state_dir)
    with exit_on_error():
        engine = make_engine(settings.database_url)
        try:
            before, after = migrate(engine)
        finally:
            engine.dispose()
    rows: list[tuple[str, object]] = [
        ("database", make_url(settings.database_url).render_as_string()),
        ("revision before", before or "none"),
        ("revision now", after),
    ]
    console.print(kv_table("Migrated", rows))


def materialize_cmd(state_dir: StateDir = None, dag_run_id: RunId = None) -> None:
    """Compute features from the database into the offline (Parquet) and online (Redis) stores."""
    from vroom_pipelines.materialize import materialize
    from vroom_pipelines.pipeline import pipeline_run

    settings = settings_for(state_dir)
    with exit_on_error(), pipeline_run(settings, DAG_MATERIALIZE, dag_run_id):
        summary = materialize(settings, Progress.for_terminal())
    console.print(kv_table("Materialized", _materialize_rows(summary)))


def train_cmd(state_dir: StateDir = None) -> None:
    """Cross-validate and fit the model, log it to MLflow, register it as `candidate`."""
    from vroom_pipelines.train import train

    settings = settings_for(state_dir)
    with exit_on_error():
        result = train(settings, progress=Progress.for_terminal())
    console.print(kv_table("Trained", _train_rows(result)))


def promote_cmd(
    state_dir: StateDir = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Promote the candidate without comparing it with the champion."
        ),
    ] = False,
) -> None:
    """Make the candidate champion if it beats the champion, both re-scored on today's
    data and the same folds (under the progressive strategy: start a rollout of it,
    which promotes it on live signals)."""
    from vroom_pipelines.promote import promote
    from vroom_rollout import as_promotion_hook, make_rollout
    from vroom_rollout.progressive.requests import progressive_starter

    settings = settings_for(state_dir)
    hook = as_promotion_hook(make_rollout(settings))
    with exit_on_error():
        result = promote(
            settings, rollout=hook, start_rollout=progressive_starter(settings), force=force
        )
    console.print(kv_table("Promotion", _promote_rows(result) + _hook_rows(hook)))
    exit_on_rollout_error(hook, result.champion_version)


def pipeline(
    data_dir: DataDir = None,
    synthetic: Synthetic = None,
    random_seed: RandomSeed = 42,
    state_dir: StateDir = None,
    dag_run_id: RunId = None,
) -> None:
    """Seed (if needed), materialize, train and promote: the whole training pipeline."""
    from vroom_pipelines.pipeline import run_pipeline
    from vroom_rollout import as_promotion_hook, make_rollout
    from vroom_rollout.progressive.requests import progressive_starter

    settings = settings_for(state_dir)
    hook = as_promotion_hook(make_rollout(settings))
    with exit_on_error():
        summary = run_pipeline(
            settings,
            data_dir=data_dir,
            synthetic=synthetic,
            random_seed=random_seed,
            dag_run_id=dag_run_id,
            rollout=hook,
            start_rollout=progressive_starter(settings),
            progress=Progress.for_terminal(),
        )
    print_pipeline_summary(summary, hook)
    exit_on_rollout_error(hook, summary.promote.champion_version)


def print_pipeline_summary(summary: PipelineSummary, hook: PromotionHook | None = None) -> None:
    rows: list[tuple[str, object]] = [("dag run id", summary.dag_run_id)]
    if summary.seed:
        rows += [(f"seed: {k}", v) for k, v in _seed_rows(summary.seed)[:4]]
    rows += [(f"materialize: {k}", v) for k, v in _materialize_rows(summary.materialize)[:4]]
    rows += [(f"train: {k}", v) for k, v in _train_rows(summary.train)[:3]]
    promote_rows = _promote_rows(summary.promote)
    rows += [(f"promote: {k}", v) for k, v in promote_rows[:4] + promote_rows[5:]]
    rows += _hook_rows(hook) if hook else []
    console.print(kv_table("Pipeline vroom_forecast_pipeline: success", rows))


def evaluate_cmd(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Folder with the CSV files.", file_okay=False)
    ],
    repeats: Annotated[int, typer.Option(min=1, max=20, help="Repeats of shuffled 5-fold.")] = 5,
) -> None:
    """Cross-validate our model against the Ray Serve forest on a data folder (no servers)."""
    from vroom_pipelines.evaluate import evaluate

    with exit_on_error(), Progress.for_terminal().step("Cross-validating four models"):
        evaluation = evaluate(
            data_dir, n_jobs=get_pipeline_settings().train_n_jobs, repeats=repeats
        )
    table = Table(title=f"MAE of the reservation count on {data_dir}", title_justify="left")
    for column in ("model", "5-fold unshuffled", f"{repeats}x5 shuffled (± sd)", "seconds"):
        table.add_column(column)
    for r in evaluation.models:
        table.add_row(
            r.model,
            f"{r.unshuffled_5fold_mae:.3f}",
            f"{r.repeated_5x5_mae:.3f} ± {r.repeated_5x5_std:.3f}",
            f"{r.seconds:.0f}",
        )
    console.print(table)
    report = evaluation.intervals
    intervals = Table(
        title=f"Prediction intervals on held-out vehicles ({repeats}x5 shuffled, "
        f"{report.n} predictions)",
        title_justify="left",
    )
    for column in ("level", "coverage", "mean width (reservations)"):
        intervals.add_column(column)
    for level, covered, width in zip(report.levels, report.coverage, report.width, strict=True):
        intervals.add_row(f"{level:g}", f"{covered:.3f}", f"{width:.2f}")
    console.print(intervals)


def outcomes_cmd(
    state_dir: StateDir = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since", formats=["%Y-%m-%d"], help="Only predictions from this UTC day on."
        ),
    ] = None,
) -> None:
    """Join the prediction log with the reservations that followed (a training set)."""
    from vroom_pipelines.outcomes import join_outcomes

    settings = settings_for(state_dir)
    with exit_on_error(), Progress.for_terminal().step("Joining logged predictions"):
        summary = join_outcomes(settings, since=since.date() if since else None)
    rows: list[tuple[str, object]] = [
        ("logged rows", summary.logged_rows),
        ("predicted by id", summary.by_id_rows),
        ("joined", summary.joined_rows),
        ("with a label", summary.labelled_rows),
        ("MAE vs label", "-" if summary.mae is None else f"{summary.mae:.3f}"),
        ("written", summary.path),
    ]
    console.print(kv_table("Outcomes", rows))


COMMANDS: dict[str, Callable[..., None]] = {
    "migrate": migrate_cmd,
    "seed": seed,
    "materialize": materialize_cmd,
    "train": train_cmd,
    "promote": promote_cmd,
    "pipeline": pipeline,
    "evaluate": evaluate_cmd,
    "outcomes": outcomes_cmd,
}


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to ``app``."""
    from vroom_pipelines.rollout_cli import app as rollout_app  # it imports this module

    for name, command in COMMANDS.items():
        app.command(name)(command)
    app.add_typer(rollout_app, name="rollout")


def main() -> None:
    """``python -m vroom_pipelines``: the pipeline commands without the local-stack ones."""
    app = typer.Typer(name="vroom-pipelines", no_args_is_help=True)
    register(app)
    app()
