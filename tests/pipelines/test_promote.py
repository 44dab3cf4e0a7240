"""Champion/challenger promotion against a real MLflow registry and a real Redis."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from vroom_common import events
from vroom_common.errors import NotFound
from vroom_common.events import ModelPromoted, Stream
from vroom_pipelines.materialize import materialize
from vroom_pipelines.promote import decide, promote
from vroom_pipelines.seed import seed_synthetic
from vroom_pipelines.settings import PipelineSettings
from vroom_pipelines.train import TrainConfig, register, train
from vroom_registry import (
    ALIAS_CANDIDATE,
    ALIAS_CHAMPION,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
    ModelRegistry,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("candidate", "champion", "promoted"),
    [(3.5, None, True), (3.3, 3.4, True), (3.4, 3.4, False), (3.5, 3.4, False)],
)
def test_without_a_comparison_decide_promotes_only_a_strictly_better_logged_score(
    candidate: float, champion: float | None, promoted: bool
) -> None:
    assert decide(candidate, champion).promote is promoted


def candidate_with_score(settings: PipelineSettings, score: float) -> str:
    """Register a version whose run logged ``cv_mae_mean = score``; alias it candidate."""
    client = MlflowClient(settings.mlflow_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(settings.mlflow_experiment)
    )
    run = client.create_run(experiment_id)
    client.log_batch(
        run.info.run_id, metrics=[Metric("cv_mae_mean", score, int(time.time() * 1000), 0)]
    )
    client.set_terminated(run.info.run_id)
    return register(
        ModelRegistry(settings.mlflow_uri, settings.model_name),
        run.info.run_id,
        f"{run.info.artifact_uri}/model",
    )


def promoted_events(client: redis.Redis) -> list[ModelPromoted]:
    entries = client.xrange(Stream.MODELS)
    parsed = [events.decode(fields) for _id, fields in entries]
    return [e for e in parsed if isinstance(e, ModelPromoted)]


def test_first_better_and_worse_candidates(
    isolated_settings: PipelineSettings, redis_client: redis.Redis
) -> None:
    settings = isolated_settings
    client = MlflowClient(settings.mlflow_uri)
    rolled_out: list[str] = []

    v1 = candidate_with_score(settings, 3.50)
    first = promote(settings, rollout=lambda e: rolled_out.append(e.version))
    assert (first.outcome, first.champion_version, first.event_published) == ("promoted", v1, True)

    v2 = candidate_with_score(settings, 3.40)
    better = promote(settings, rollout=lambda e: rolled_out.append(e.version))
    assert (better.outcome, better.champion_version, better.previous_champion_version) == (
        "promoted",
        v2,
        v1,
    )

    v3 = candidate_with_score(settings, 3.45)
    worse = promote(settings, rollout=lambda e: rolled_out.append(e.version))
    assert (worse.outcome, worse.champion_version) == ("retained", v2)
    # Versions without a loadable model cannot be re-scored: the logged scores decide.
    assert worse.comparison is None
    assert "logged cv_mae_mean 3.4500 >= champion's 3.4000 (not re-scored: " in worse.reason

    again = promote(settings)  # the same worse candidate: still retained, nothing emitted
    assert again.outcome == "retained"

    assert client.get_model_version_by_alias(settings.model_name, ALIAS_CHAMPION).version == v2
    assert client.get_model_version_by_alias(settings.model_name, ALIAS_CANDIDATE).version == v3
    assert client.get_model_version(settings.model_name, v3).tags[TAG_PROMOTION] == "retained"
    assert client.get_model_version(settings.model_name, v2).tags[TAG_PROMOTION] == "champion"
    # Events and rollouts only for the two promotions, in order, naming the predecessor.
    emitted = promoted_events(redis_client)
    assert [(e.version, e.previous_version) for e in emitted] == [(v1, None), (v2, v1)]
    assert all(e.model_name == settings.model_name for e in emitted)
    assert rolled_out == [v1, v2]


def test_promoting_the_champion_again_is_unchanged(
    isolated_settings: PipelineSettings, redis_client: redis.Redis
) -> None:
    version = candidate_with_score(isolated_settings, 3.5)
    promote(isolated_settings)
    result = promote(isolated_settings)
    assert (result.outcome, result.champion_version) == ("unchanged", version)
    assert len(promoted_events(redis_client)) == 1


def test_no_candidate_is_a_clear_error(isolated_settings: PipelineSettings) -> None:
    with pytest.raises(NotFound, match="has no 'candidate' version: run `vroom train`"):
        promote(isolated_settings)


def test_redis_down_keeps_the_promotion_and_reports_the_event_unpublished(
    isolated_settings: PipelineSettings,
) -> None:
    settings = isolated_settings.with_overrides(redis_url="redis://127.0.0.1:1/0")
    version = candidate_with_score(settings, 3.5)
    result = promote(settings)
    assert (result.outcome, result.champion_version, result.event_published) == (
        "promoted",
        version,
        False,
    )


def test_under_progressive_delivery_a_better_candidate_starts_a_rollout(
    isolated_settings: PipelineSettings, redis_client: redis.Redis
) -> None:
    """The first model goes live at once (nothing to compare it with live); a better one
    starts a rollout and leaves the champion alias to the rollout controller."""
    settings = isolated_settings
    client = MlflowClient(settings.mlflow_uri)
    started: list[tuple[str, str]] = []
    rolled_out: list[str] = []

    def start(version: str, reason: str) -> str:
        started.append((version, reason))
        return f"rollout-{version}"

    v1 = candidate_with_score(settings, 3.50)
    first = promote(settings, rollout=lambda e: rolled_out.append(e.version), start_rollout=start)
    assert (first.outcome, first.champion_version, first.rollout_id) == ("promoted", v1, None)
    assert started == []

    v2 = candidate_with_score(settings, 3.40)
    better = promote(settings, rollout=lambda e: rolled_out.append(e.version), start_rollout=start)
    assert (better.outcome, better.rollout_id, better.champion_version) == (
        "rollout-started",
        f"rollout-{v2}",
        v1,
    )
    assert [version for version, _ in started] == [v2]
    assert "3.4000 < champion's 3.5000" in started[0][1]
    assert client.get_model_version_by_alias(settings.model_name, ALIAS_CHAMPION).version == v1
    assert client.get_model_version(settings.model_name, v2).tags[TAG_PROMOTION] == "rollout"
    # Only the first model was announced and rolled out at once.
    assert [e.version for e in promoted_events(redis_client)] == [v1]
    assert rolled_out == [v1]

    candidate_with_score(settings, 3.60)
    worse = promote(settings, start_rollout=start)
    assert worse.outcome == "retained"
    assert len(started) == 1


def test_promotion_compares_like_with_like_on_todays_data(
    isolated_settings: PipelineSettings, redis_client: redis.Redis
) -> None:
    """Real models on a synthetic fleet: a clearly better candidate is promoted; one
    better only by noise is retained even when its logged score looks better; both
    figures and the test are logged; ``force`` promotes without comparing."""
    settings = isolated_settings
    client = MlflowClient(settings.mlflow_uri)
    seed_synthetic(settings, 400, seed=8)
    materialize(settings)
    small = TrainConfig(n_estimators=30)

    weak = train(settings, replace(small, features=("technology",))).model_version
    assert promote(settings).outcome == "promoted"  # the first model

    strong = train(settings, small)
    better = promote(settings)
    assert (better.outcome, better.champion_version) == ("promoted", strong.model_version)
    assert better.comparison is not None
    assert better.comparison.candidate_better
    assert better.comparison.folds == 5 * settings.promotion_cv_repeats
    assert better.reason.startswith("better beyond fold noise on the same 15 folds")
    assert better.previous_champion_version == weak

    noise = train(settings, replace(small, random_state=7))
    # Its logged score is made to look far better: the comparison does not read it.
    client.log_metric(noise.run_id, "cv_mae_mean", strong.cv_mae_mean - 1.0)
    retained = promote(settings)
    assert (retained.outcome, retained.champion_version) == ("retained", strong.model_version)
    c = retained.comparison
    assert c is not None
    assert not c.candidate_better
    assert abs(c.mean_difference) < 0.1
    assert c.p_value >= settings.promotion_alpha
    assert retained.reason.startswith("not better beyond fold noise")
    logged = client.get_run(noise.run_id).data.metrics
    assert logged["promotion_candidate_mae"] == pytest.approx(c.candidate_mae)
    assert logged["promotion_champion_mae"] == pytest.approx(c.champion_mae)
    assert logged["promotion_p_value"] == pytest.approx(c.p_value)
    version = client.get_model_version(settings.model_name, noise.model_version)
    assert version.tags[TAG_PROMOTION] == "retained"
    assert version.tags[TAG_PROMOTION_REASON] == retained.reason

    forced = promote(settings, force=True)
    assert (forced.outcome, forced.champion_version) == ("promoted", noise.model_version)
    assert forced.comparison is None
    assert forced.reason.startswith("forced")
