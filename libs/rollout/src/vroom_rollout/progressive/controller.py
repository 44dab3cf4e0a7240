"""The rollout controller: the one writer that moves a rollout through its states.

Any number of controllers may run; the one holding the lease (renewed by a thread of
its own, so a slow deployment never lets it lapse) reads the commands stream, judges
the current step on its signals and carries out the serving-side work through a
:class:`Deployer`. Every step is written to Redis before the next begins and every
side effect is idempotent, so a controller that dies anywhere is replaced by the next
lease holder, which resumes from the stored state.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import structlog

from vroom_common.errors import DependencyUnavailable, VroomError
from vroom_common.events import ModelPromoted, RolloutRequested
from vroom_registry import ALIAS_CHAMPION, ALIAS_ROLLOUT
from vroom_rollout.base import BackendName
from vroom_rollout.progressive import machine
from vroom_rollout.progressive.machine import CommandOutcome, Policy, RolloutState
from vroom_rollout.progressive.registry import RolloutRegistry
from vroom_rollout.progressive.store import COMMAND_MAX_AGE_S, LeaseLost, RolloutStore, entry_age_s
from vroom_rollout.settings import RolloutSettings

log = structlog.get_logger(__name__)


class Deployer(Protocol):
    """The serving side of a rollout (``LocalDeployer``, ``KubernetesDeployer``).

    Each method is idempotent: the controller calls it again after a crash or a
    transient failure. ``*_ready``/``champion_serves`` answer ``None`` while the work
    is under way, a description once it is done, and raise when it failed for good.
    """

    backend: BackendName

    def deploy_candidate(self, version: str) -> None: ...

    def candidate_ready(self, version: str) -> str | None: ...

    def serve_champion(self, version: str, *, announced: bool = False) -> None: ...

    def champion_serves(self, version: str) -> str | None: ...

    def remove_candidate(self) -> str: ...


def new_owner() -> str:
    """A controller's identity in the lease: host, process, and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseKeeper(threading.Thread):
    """Takes and renews the lease every third of its lifetime, in the background."""

    def __init__(self, store: RolloutStore, owner: str, ttl_s: float) -> None:
        super().__init__(name="rollout-lease", daemon=True)
        self.store, self.owner, self.ttl_s = store, owner, ttl_s
        self.held = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.store.acquire(self.owner, self.ttl_s):
                    if not self.held.is_set():
                        log.info(
                            "rollout lease taken", owner=self.owner, model=self.store.model_name
                        )
                    self.held.set()
                else:
                    self.held.clear()
            except VroomError as exc:
                # Redis is unreachable: the lease may expire meanwhile; stop leading.
                self.held.clear()
                log.warning("rollout lease not renewed", error=exc.message)
            self.stopping.wait(self.ttl_s / 3)
        self.store.release(self.owner)


class Controller:
    """Advances the rollouts of ``settings.model_name``."""

    def __init__(
        self,
        settings: RolloutSettings,
        store: RolloutStore,
        deployer: Deployer,
        registry: RolloutRegistry,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        announce_model: Callable[[ModelPromoted], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.deployer = deployer
        self.registry = registry
        self.owner = owner or new_owner()
        self.clock = clock
        self.announce_model = announce_model
        self.lease = LeaseKeeper(store, self.owner, settings.rollout_lease_ttl_s)

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        """Tick until ``stop`` is set; only the lease holder's ticks do anything."""
        self.lease.start()
        try:
            while not stop.is_set():
                if self.lease.held.is_set():
                    try:
                        self.tick()
                    except LeaseLost as exc:
                        self.lease.held.clear()
                        log.warning("rollout lease lost", error=exc.message)
                    except VroomError as exc:
                        log.warning("rollout tick failed; retrying", error=exc.message)
                if on_tick is not None:
                    on_tick()
                stop.wait(self.settings.rollout_tick_s)
        finally:
            self.lease.stopping.set()
            self.lease.join(timeout=5)

    def tick(self) -> RolloutState:
        """Apply new commands, then move the current rollout on as far as it can go."""
        state = self._apply_commands(self.store.load())
        return self._progress(state)

    def _commit(self, state: RolloutState, *, announce: bool = True) -> RolloutState:
        self.store.commit(state, self.owner, announce=announce)
        if announce:
            log.info(
                "rollout progressed",
                rollout_id=state.id,
                state=state.state,
                champion_version=state.champion_version,
                candidate_version=state.candidate_version,
                weight=state.split,
                reason=state.reason,
            )
        return state

    # --- commands ----------------------------------------------------------------------------

    def _apply_commands(self, state: RolloutState) -> RolloutState:
        for entry_id, command in self.store.commands(state.command_cursor):
            before = state.state
            if command is None:
                state = state.model_copy(update={"command_cursor": entry_id})
                self._commit(state, announce=False)
                continue
            state, accepted, detail = self._apply(state, entry_id, command)
            outcome = CommandOutcome(
                id=entry_id, action=command.action, accepted=accepted, detail=detail
            )
            state = state.model_copy(update={"command_cursor": entry_id, "last_command": outcome})
            log.info("rollout command", action=command.action, accepted=accepted, detail=detail)
            self._commit(
                state, announce=state.state != before or (command.action == "start" and accepted)
            )
        return state

    def _apply(
        self, state: RolloutState, entry_id: str, command: RolloutRequested
    ) -> tuple[RolloutState, bool, str]:
        now = self.clock()
        if entry_age_s(entry_id, now) > COMMAND_MAX_AGE_S:
            return state, False, f"request {entry_id} expired before a controller read it"
        who = command.requested_by
        if command.action == "start":
            return self._start(state, entry_id, command, now)
        if not state.active:
            return state, False, f"no rollout of {state.model_name!r} is in progress"
        if command.action == "abort":
            reason = f"aborted by {who}" + (f": {command.reason}" if command.reason else "")
            return machine.rolled_back(state, now, reason), True, reason
        reason = f"promoted by {who}: remaining steps skipped"
        return machine.promoting(state, now, reason), True, reason

    def _start(  # noqa: PLR0911 - one refusal per rule, each with its own message
        self, state: RolloutState, entry_id: str, command: RolloutRequested, now: float
    ) -> tuple[RolloutState, bool, str]:
        version = command.version
        if state.active:
            return (
                state,
                False,
                (
                    f"a rollout of v{state.candidate_version} is {state.state}: "
                    "abort or promote it first"
                ),
            )
        if not version:
            return state, False, "a start request needs a version"
        champion = self.registry.champion()
        if champion is None:
            return state, False, "no champion serves yet: the first model goes live at once"
        if champion == version:
            return state, False, f"v{version} is already champion"
        try:
            policy = Policy.from_settings(
                self.settings,
                steps=command.steps,
                step_seconds=command.step_seconds,
                shadow_seconds=command.shadow_seconds,
            )
        except ValueError as exc:
            return state, False, str(exc)
        try:
            self.registry.stage_candidate(version)
        except VroomError as exc:
            if isinstance(exc, DependencyUnavailable):
                raise  # not consumed: retried on the next tick
            return state, False, exc.message
        rollout_id = entry_id.replace("-", "")[-12:] + uuid.uuid4().hex[:4]
        started = machine.started(
            state,
            rollout_id=rollout_id,
            champion_version=champion,
            candidate_version=version,
            policy=policy,
            now=now,
            requested_by=command.requested_by,
        )
        return started, True, f"rollout {rollout_id}: v{version} against v{champion}"

    # --- progress -----------------------------------------------------------------------------

    def _progress(self, state: RolloutState) -> RolloutState:  # noqa: PLR0911 - one per state
        now = self.clock()
        if state.state == "starting":
            return self._starting(state, now)
        if state.mirrored:
            signals = self.store.signals(state)
            verdict = machine.judge(state, signals, now)
            if verdict.action == "advance":
                return self._progress(
                    self._commit(machine.advanced(state, now, verdict.reason, signals))
                )
            if verdict.action == "rollback":
                return self._progress(
                    self._commit(machine.rolled_back(state, now, verdict.reason, signals))
                )
            if state.status != verdict.reason:
                return self._commit(
                    state.model_copy(update={"status": verdict.reason}), announce=False
                )
            return state
        if state.state == "promoting":
            return self._promoting(state, now)
        if not state.cleaned_up:
            return self._clean_up(state)
        return state

    def _timed_out(self, since: float | None, now: float) -> bool:
        return now - (since or now) > self.settings.rollout_timeout_s

    def _starting(self, state: RolloutState, now: float) -> RolloutState:
        version = state.candidate_version or ""
        try:
            if not state.deployed:
                self.deployer.deploy_candidate(version)
                state = self._commit(state.model_copy(update={"deployed": True}), announce=False)
            detail = self.deployer.candidate_ready(version)
        except LeaseLost:
            raise  # the successor carries on from the stored state
        except DependencyUnavailable as exc:
            if not self._timed_out(state.started_at, now):
                log.warning("candidate deployment waiting", error=exc.message)
                return state
            return self._progress(
                self._commit(
                    machine.rolled_back(
                        state, now, f"candidate v{version} could not be deployed: {exc.message}"
                    )
                )
            )
        except VroomError as exc:
            return self._progress(
                self._commit(
                    machine.rolled_back(
                        state, now, f"candidate v{version} failed to load: {exc.message}"
                    )
                )
            )
        if detail is not None:
            # The time after the deployment: the shadow step starts when the candidate is
            # ready, not when the tick began.
            return self._progress(self._commit(machine.shadowing(state, self.clock(), detail)))
        if self._timed_out(state.started_at, now):
            return self._progress(
                self._commit(
                    machine.rolled_back(
                        state,
                        now,
                        f"candidate v{version} was not ready within "
                        f"{self.settings.rollout_timeout_s:g} s",
                    )
                )
            )
        return state

    def _promoting(self, state: RolloutState, now: float) -> RolloutState:
        version = state.candidate_version or ""
        try:
            if not state.champion_switched:
                event = self.registry.make_champion(
                    version, state.champion_version, state.reason or ""
                )
                if self.announce_model is not None:
                    self.announce_model(event)
                self.deployer.serve_champion(version, announced=self.announce_model is not None)
                state = self._commit(
                    state.model_copy(update={"champion_switched": True}), announce=False
                )
            detail = self.deployer.champion_serves(version)
        except LeaseLost:
            raise
        except VroomError as exc:
            if not self._timed_out(state.step_started_at, now):
                log.warning("promotion waiting", version=version, error=exc.message)
                return state
            return self._progress(
                self._commit(
                    machine.rolled_back(
                        state, now, f"the champion could not switch to v{version}: {exc.message}"
                    )
                )
            )
        if detail is not None:
            # The time the champion serves the new version (a reload takes a while).
            return self._progress(self._commit(machine.promoted(state, self.clock(), detail)))
        if self._timed_out(state.step_started_at, now):
            return self._progress(
                self._commit(
                    machine.rolled_back(
                        state,
                        now,
                        f"the champion did not serve v{version} within "
                        f"{self.settings.rollout_timeout_s:g} s",
                    )
                )
            )
        return state

    def _clean_up(self, state: RolloutState) -> RolloutState:
        """Take the candidate out of serving; after a rollback, put the champion back if
        the promotion had already moved it."""
        version = state.candidate_version or ""
        try:
            if state.state == "rolled_back":
                old = state.champion_version
                if old and state.champion_switched and self.registry.champion() != old:
                    self.registry.point(ALIAS_CHAMPION, old)
                    self.deployer.serve_champion(old)
                self.registry.record_rollback(version, state.reason or "rolled back")
            self.deployer.remove_candidate()
            self.registry.clear(ALIAS_ROLLOUT)
        except LeaseLost:
            raise
        except VroomError as exc:
            log.warning("rollout clean-up failed; retrying", error=exc.message)
            return state
        return self._commit(state.model_copy(update={"cleaned_up": True}), announce=False)
