"""Promote: champion/challenger, compared like with like.

The first candidate becomes champion. After that, both models' procedures are refit
on today's offline store over the same repeated folds (``vroom_pipelines.compare``),
and the candidate takes the alias only if it is better by more than the fold-to-fold
noise (a paired, corrected t-test). A champion that cannot be re-scored (its sklearn
artifact is gone or no longer loads) is compared by the ``cv_mae_mean`` each model
logged, and the reason says so. A candidate that does not win is kept as a
registered, non-champion version with the reason on its tags; the comparison's
figures are logged on its run. Only a promotion emits ``model-promoted`` and
triggers the rollout. ``force`` skips the comparison (an operator's decision).

With a ``start_rollout`` (progressive delivery, see docs/rollouts.md) a better
candidate does not take the alias here: it starts a progressive rollout (shadow, then
canary steps on live signals), and the rollout controller moves the alias only if the
candidate holds up. The first model has nothing to be compared with on live traffic
and becomes champion at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import mlflow
import redis
import structlog

from vroom_common import events
from vroom_common.errors import NotFound, PipelineFailed
from vroom_common.events import ModelPromoted
from vroom_common.redis_clients import redis_client
from vroom_pipelines.compare import Comparison, Procedure, compare, procedure_of
from vroom_pipelines.preflight import model_registry
from vroom_pipelines.settings import PipelineSettings
from vroom_pipelines.train import load_training_set
from vroom_registry import (
    ALIAS_CANDIDATE,
    ALIAS_CHAMPION,
    PROMOTION_METRIC,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
    ModelRegistry,
    Version,
)

log = structlog.get_logger(__name__)

#: Rolls a promoted model out to the serving side at once (``vroom_rollout``: local
#: hot reload, or an InferenceService patch).
RolloutHook = Callable[[ModelPromoted], None]
#: Starts a progressive rollout of a version (``vroom_rollout.progressive_starter``);
#: returns the rollout's id.
StartRollout = Callable[[str, str], str]


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    candidate_score: float,
    champion_score: float | None,
    comparison: Comparison | None = None,
    *,
    not_rescored: str = "",
) -> Decision:
    """The promotion rule, on its own so it can be tested without a registry: the
    paired comparison when there is one, else the logged scores (``not_rescored``
    says why there is none)."""
    if champion_score is None:
        return Decision(True, "no champion yet")
    if comparison is not None:
        if comparison.candidate_better:
            return Decision(True, f"better beyond fold noise {comparison.summary()}")
        return Decision(False, f"not better beyond fold noise {comparison.summary()}")
    note = f" (not re-scored: {not_rescored})" if not_rescored else ""
    if candidate_score < champion_score:
        return Decision(
            True,
            f"logged {PROMOTION_METRIC} {candidate_score:.4f} < champion's "
            f"{champion_score:.4f}{note}",
        )
    return Decision(
        False,
        f"logged {PROMOTION_METRIC} {candidate_score:.4f} >= champion's {champion_score:.4f}{note}",
    )


class NotRescorable(Exception):
    """A version's trained procedure cannot be recovered; the message says why."""


@dataclass(frozen=True)
class PromotionResult:
    outcome: Literal["promoted", "retained", "unchanged", "rollout-started"]
    reason: str
    candidate_version: str
    candidate_score: float
    champion_version: str | None
    """The champion after this run."""
    previous_champion_version: str | None
    previous_champion_score: float | None
    event_published: bool
    rollout_id: str | None = None
    """The progressive rollout started for the candidate (outcome ``rollout-started``)."""
    comparison: Comparison | None = None
    """Both models re-scored on today's data (none: no champion, forced, or not
    re-scorable; the reason says which)."""


def _run_id(version: Version) -> str:
    if not version.run_id:
        raise NotFound(f"version {version.version} was registered without a training run")
    return version.run_id


def _score(models: ModelRegistry, version: Version) -> float:
    metrics = models.run(version).metrics
    if PROMOTION_METRIC not in metrics:
        raise NotFound(
            f"run {version.run_id} of version {version.version} has no {PROMOTION_METRIC}"
        )
    return metrics[PROMOTION_METRIC]


def _procedure(models: ModelRegistry, version: Version) -> Procedure:
    """The procedure of a registered version, from its logged sklearn model."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model = mlflow.sklearn.load_model(str(models.download(version, Path(tmp))))
        # Unpickling a model trained by other code raises whatever that code raises.
        except Exception as exc:
            raise NotRescorable(f"v{version.version}'s sklearn model does not load: {exc}") from exc
    try:
        return procedure_of(model)
    except PipelineFailed as exc:
        raise NotRescorable(f"v{version.version}: {exc.message}") from exc


def rescore(
    settings: PipelineSettings, models: ModelRegistry, candidate: Version, champion: Version
) -> Comparison:
    """Both versions' procedures refit on today's offline store, same folds."""
    procedures = _procedure(models, candidate), _procedure(models, champion)
    x, y = load_training_set(settings)
    return compare(
        *procedures,
        x,
        y,
        repeats=settings.promotion_cv_repeats,
        alpha=settings.promotion_alpha,
        n_jobs=settings.train_n_jobs,
    )


def _publish(settings: PipelineSettings, event: ModelPromoted) -> bool:
    """Emit the event; a Redis outage is reported, not fatal (the alias already moved)."""
    client = redis_client(settings)
    try:
        events.publish(client, event, maxlen=settings.stream_maxlen)
        return True
    except redis.exceptions.RedisError as exc:
        log.error("model-promoted event not published", error=str(exc), version=event.version)
        return False
    finally:
        client.close()


def promote(
    settings: PipelineSettings,
    rollout: RolloutHook | None = None,
    start_rollout: StartRollout | None = None,
    *,
    force: bool = False,
) -> PromotionResult:
    """Compare the candidate with the champion; if it is better (or ``force``), move the
    alias (and call ``rollout``), or, given ``start_rollout`` and a champion to compare
    with on live traffic, start a progressive rollout of the candidate instead."""
    models = model_registry(settings)
    name = settings.model_name
    candidate = models.get(ALIAS_CANDIDATE, "run `vroom train`")
    champion = models.find(ALIAS_CHAMPION)
    candidate_score = _score(models, candidate)
    champion_score = _score(models, champion) if champion else None

    previous = champion.version if champion else None
    result = PromotionResult(
        outcome="unchanged",
        reason="the candidate is already champion",
        candidate_version=candidate.version,
        candidate_score=candidate_score,
        champion_version=previous,
        previous_champion_version=previous,
        previous_champion_score=champion_score,
        event_published=False,
    )
    if previous == result.candidate_version:
        return result

    comparison: Comparison | None = None
    if force:
        decision = Decision(True, "forced: promoted without comparison")
    else:
        not_rescored = ""
        if champion is not None:
            try:
                comparison = rescore(settings, models, candidate, champion)
            except NotRescorable as exc:
                not_rescored = str(exc)
                log.warning("models not re-scored; comparing logged scores", reason=not_rescored)
        decision = decide(candidate_score, champion_score, comparison, not_rescored=not_rescored)
    if comparison is not None:
        models.log_metrics(_run_id(candidate), comparison.metrics())
    result = replace(result, comparison=comparison)
    models.tag(candidate.version, {TAG_PROMOTION_REASON: decision.reason})
    if not decision.promote:
        models.tag(candidate.version, {TAG_PROMOTION: "retained"})
        log.info("candidate retained", version=candidate.version, reason=decision.reason)
        return replace(result, outcome="retained", reason=decision.reason)

    if start_rollout is not None and champion is not None:
        # A failure to start (no controller, a rollout already running) propagates: the
        # candidate stays registered with the reason, and the champion keeps serving.
        rollout_id = start_rollout(result.candidate_version, decision.reason)
        models.tag(candidate.version, {TAG_PROMOTION: "rollout"})
        log.info(
            "progressive rollout started",
            version=candidate.version,
            rollout_id=rollout_id,
            reason=decision.reason,
        )
        return replace(
            result, outcome="rollout-started", reason=decision.reason, rollout_id=rollout_id
        )

    models.point(ALIAS_CHAMPION, candidate.version)
    models.tag(candidate.version, {TAG_PROMOTION: "champion"})
    event = ModelPromoted(
        model_name=name,
        version=result.candidate_version,
        run_id=_run_id(candidate),
        cv_mae_mean=candidate_score,
        previous_version=previous,
    )
    published = _publish(settings, event)
    log.info("candidate promoted", version=candidate.version, reason=decision.reason)
    if rollout is not None:
        rollout(event)
    return replace(
        result,
        outcome="promoted",
        reason=decision.reason,
        champion_version=result.candidate_version,
        event_published=published,
    )
