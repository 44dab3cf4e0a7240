"""The rollout state machine: states, the schedule, and the rule that judges a step.

Everything here is pure (no Redis, no clock of its own), so each transition and each
decision can be tested on its own; :mod:`vroom_rollout.progressive.controller` is the
one writer that applies them. States::

    idle ─start─▶ starting ─candidate ready─▶ shadow ─▶ canary(step 1) ─▶ … ─▶ promoting ─▶ promoted
                     │                          │           │                    │
                     └──────── load failed, breach, abort ──┴────────────────────┴──▶ rolled_back

- ``starting``: the candidate is being deployed (loaded beside the champion, or its own
  InferenceService created and Ready); it gets no traffic yet.
- ``shadow``: the champion answers every request; a mirrored copy goes to the
  candidate, whose answers are compared with the champion's and never returned.
- ``canary``: the candidate answers ``weight`` percent of requests (``steps``); the
  rest are still mirrored to it.
- ``promoting``: the champion alias moves to the candidate and the champion's
  predictor switches to it; the split stays until the champion serves the new version.
- ``promoted`` / ``rolled_back``: final. The candidate is removed from serving; a
  rollback leaves the champion alias untouched and tags the version with the reason.

A step ends when it has lasted its time AND the candidate has served
``min_requests`` in it with every signal inside its bound; any signal out of bound,
once the step has ``min_requests``, rolls back at once, naming the signal and value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from vroom_rollout.progressive.signals import VersionSignals
from vroom_rollout.settings import RolloutSettings, check_steps

Phase = Literal["idle", "starting", "shadow", "canary", "promoting", "promoted", "rolled_back"]

#: States in which a rollout is under way (one at a time per model).
ACTIVE: Final[frozenset[str]] = frozenset({"starting", "shadow", "canary", "promoting"})
#: States in which the candidate receives mirrored traffic.
MIRRORED: Final[frozenset[str]] = frozenset({"shadow", "canary"})
#: The step index of the shadow phase (canary steps are 0, 1, ...).
SHADOW_STEP: Final = -1


class Policy(BaseModel):
    """The schedule and the bounds of one rollout, fixed when it starts."""

    model_config = ConfigDict(frozen=True)

    steps: list[int]
    shadow_seconds: float = Field(ge=0)
    step_seconds: float = Field(gt=0)
    min_requests: int = Field(ge=1)
    max_error_rate: float = Field(ge=0, le=1)
    max_p99_ratio: float = Field(gt=0)
    p99_slack_ms: float = Field(ge=0)
    max_disagreement: float = Field(ge=0)

    @classmethod
    def from_settings(
        cls,
        settings: RolloutSettings,
        *,
        steps: list[int] | None = None,
        step_seconds: float | None = None,
        shadow_seconds: float | None = None,
    ) -> Policy:
        """The settings' policy, with a start request's own schedule where it gives one."""
        return cls(
            steps=check_steps(list(steps)) if steps else list(settings.rollout_steps),
            shadow_seconds=(
                settings.rollout_shadow_s if shadow_seconds is None else shadow_seconds
            ),
            step_seconds=settings.rollout_step_s if step_seconds is None else step_seconds,
            min_requests=settings.rollout_min_requests,
            max_error_rate=settings.rollout_max_error_rate,
            max_p99_ratio=settings.rollout_max_p99_ratio,
            p99_slack_ms=settings.rollout_p99_slack_ms,
            max_disagreement=settings.rollout_max_disagreement,
        )


class Transition(BaseModel):
    """One entry of a rollout's history."""

    at: float
    state: Phase
    weight: int
    reason: str
    signals: dict[str, VersionSignals] = Field(default_factory=dict)
    """The step's signals when the transition was decided (empty when none apply)."""


class CommandOutcome(BaseModel):
    """What the controller did with the last command it read."""

    id: str
    action: str
    accepted: bool
    detail: str


class RolloutState(BaseModel):
    """A model's rollout as stored in Redis (``vroom_rollout.progressive.store``)."""

    model_name: str
    id: str = ""
    state: Phase = "idle"
    champion_version: str | None = None
    candidate_version: str | None = None
    weight: int = 0
    """Percent of requests the candidate answers."""
    step: int = SHADOW_STEP
    started_at: float | None = None
    step_started_at: float | None = None
    policy: Policy | None = None
    reason: str | None = None
    history: list[Transition] = Field(default_factory=list)
    status: str | None = None
    """What the current step waits for (the latest verdict), e.g. "12 of 50 requests"."""
    deployed: bool = False
    """The candidate's deployment was started (``starting`` only polls it after that)."""
    champion_switched: bool = False
    """``promoting`` moved the champion alias and told the champion's predictor."""
    cleaned_up: bool = True
    """False while a finished rollout still has a candidate to remove from serving."""
    command_cursor: str = "0-0"
    """The last entry of the commands stream this rollout's controller has applied."""
    last_command: CommandOutcome | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def mirrored(self) -> bool:
        return self.state in MIRRORED

    @property
    def split(self) -> int:
        """Percent of requests the candidate answers right now."""
        return self.weight if self.state in ("canary", "promoting") else 0

    @property
    def step_name(self) -> str:
        """The label the step's signals are stored under (``shadow``, ``canary-10``...)."""
        if self.state == "shadow" or self.step == SHADOW_STEP:
            return "shadow"
        return f"canary-{self.weight}"

    def step_seconds(self) -> float:
        policy = self.require_policy()
        return policy.shadow_seconds if self.step == SHADOW_STEP else policy.step_seconds

    def require_policy(self) -> Policy:
        if self.policy is None:
            raise ValueError(f"rollout {self.id} of {self.model_name} has no policy")
        return self.policy


# --- transitions (each returns a new state; the caller stores and announces it) ----------


def _moved(
    state: RolloutState,
    phase: Phase,
    now: float,
    reason: str,
    *,
    weight: int | None = None,
    step: int | None = None,
    signals: dict[str, VersionSignals] | None = None,
) -> RolloutState:
    weight = state.weight if weight is None else weight
    entry = Transition(at=now, state=phase, weight=weight, reason=reason, signals=signals or {})
    return state.model_copy(
        update={
            "state": phase,
            "weight": weight,
            "step": state.step if step is None else step,
            "step_started_at": now,
            "reason": reason,
            "status": None,
            "history": [*state.history, entry],
        }
    )


def started(
    previous: RolloutState,
    *,
    rollout_id: str,
    champion_version: str,
    candidate_version: str,
    policy: Policy,
    now: float,
    requested_by: str,
) -> RolloutState:
    """A new rollout, ``starting``: the previous one's history is not carried over."""
    fresh = RolloutState(
        model_name=previous.model_name,
        id=rollout_id,
        champion_version=champion_version,
        candidate_version=candidate_version,
        policy=policy,
        started_at=now,
        cleaned_up=False,
        command_cursor=previous.command_cursor,
        last_command=previous.last_command,
    )
    return _moved(
        fresh,
        "starting",
        now,
        f"v{candidate_version} against champion v{champion_version}, requested by "
        f"{requested_by}: deploying the candidate",
        weight=0,
        step=SHADOW_STEP,
    )


def shadowing(state: RolloutState, now: float, detail: str) -> RolloutState:
    """The candidate is ready: shadow it, or (``shadow_seconds`` 0) go straight to the
    first canary step."""
    policy = state.require_policy()
    if policy.shadow_seconds == 0:
        share = policy.steps[0]
        return _moved(
            state,
            "canary",
            now,
            f"candidate ready ({detail}); no shadow phase: {share}% to the candidate",
            weight=share,
            step=0,
        )
    return _moved(
        state,
        "shadow",
        now,
        f"candidate ready ({detail}); shadowing for at least {policy.shadow_seconds:g} s",
        weight=0,
        step=SHADOW_STEP,
    )


def advanced(
    state: RolloutState, now: float, reason: str, signals: dict[str, VersionSignals]
) -> RolloutState:
    """The next canary step, or ``promoting`` after the last one."""
    policy = state.require_policy()
    nxt = state.step + 1
    if nxt >= len(policy.steps):
        return promoting(state, now, f"{reason}; last step passed", signals)
    share = policy.steps[nxt]
    return _moved(
        state,
        "canary",
        now,
        f"{reason}; {share}% to the candidate",
        weight=share,
        step=nxt,
        signals=signals,
    )


def promoting(
    state: RolloutState, now: float, reason: str, signals: dict[str, VersionSignals] | None = None
) -> RolloutState:
    return _moved(state, "promoting", now, reason, signals=signals)


def promoted(state: RolloutState, now: float, detail: str) -> RolloutState:
    moved = _moved(
        state, "promoted", now, f"v{state.candidate_version} is champion: {detail}", weight=100
    )
    return moved.model_copy(update={"champion_version": state.candidate_version})


def rolled_back(
    state: RolloutState, now: float, reason: str, signals: dict[str, VersionSignals] | None = None
) -> RolloutState:
    return _moved(state, "rolled_back", now, reason, weight=0, signals=signals)


# --- the step rule --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the signals of a step say: wait, advance, or roll back (and why)."""

    action: Literal["wait", "advance", "rollback"]
    reason: str


def judge(  # noqa: PLR0911 - one verdict per signal, each naming it
    state: RolloutState, signals: dict[str, VersionSignals], now: float
) -> Verdict:
    """Judge the current shadow or canary step of ``state`` on its ``signals``.

    The candidate's p99 against the champion's (every call, failed ones included), its
    error rate, and the median
    disagreement on mirrored requests are checked once the candidate has
    ``min_requests`` in the step; a breach of any rolls back. The step advances when,
    in addition, it has lasted its time.
    """
    policy = state.require_policy()
    candidate_version = state.candidate_version or ""
    candidate = signals.get(candidate_version, VersionSignals())
    champion = signals.get(state.champion_version or "", VersionSignals())
    label = f"candidate v{candidate_version}"
    if candidate.requests < policy.min_requests:
        return Verdict(
            "wait", f"{label} has {candidate.requests} of {policy.min_requests} requests"
        )
    # Latency first: a candidate too slow for its deadline also fails its calls, and
    # the cause is the latency.
    if champion.requests >= policy.min_requests and candidate.p99_ms is not None:
        bound = (champion.p99_ms or 0.0) * policy.max_p99_ratio + policy.p99_slack_ms
        if candidate.p99_ms > bound:
            return Verdict(
                "rollback",
                f"p99_ms {candidate.p99_ms:.1f} > {bound:.1f} (champion p99 "
                f"{champion.p99_ms or 0:.1f} ms x {policy.max_p99_ratio:g} + "
                f"{policy.p99_slack_ms:g} ms)",
            )
    if candidate.error_rate > policy.max_error_rate:
        return Verdict(
            "rollback",
            f"error_rate {candidate.error_rate:.3f} > {policy.max_error_rate:g} "
            f"({candidate.errors} of {candidate.requests} {label} requests failed)",
        )
    if candidate.compared >= policy.min_requests and candidate.disagreement_median is not None:
        if candidate.disagreement_median > policy.max_disagreement:
            return Verdict(
                "rollback",
                f"disagreement_median {candidate.disagreement_median:.2f} > "
                f"{policy.max_disagreement:g} reservations ({candidate.compared} mirrored "
                f"requests compared)",
            )
    elif candidate.compared < policy.min_requests:
        return Verdict(
            "wait",
            f"{label} has {candidate.compared} of {policy.min_requests} compared requests",
        )
    elapsed = now - (state.step_started_at or now)
    if elapsed < state.step_seconds():
        return Verdict(
            "wait", f"signals in bounds; step at {elapsed:.0f} of {state.step_seconds():g} s"
        )
    return Verdict(
        "advance",
        f"{state.step_name} passed: {candidate.requests} requests, error_rate "
        f"{candidate.error_rate:.3f}, p99 {candidate.p99_ms or 0:.1f} ms, disagreement "
        f"{candidate.disagreement_median or 0:.2f}",
    )
