"""In-test stand-ins for the registry and the serving side of a rollout, for tests about
the controller itself (the real ones are tested against MLflow, a predictor and a fake
Kubernetes API server)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from vroom_common.errors import NotFound
from vroom_common.events import ModelPromoted, RolloutProgressed, RolloutRequested, Stream, decode
from vroom_rollout.base import BackendName
from vroom_rollout.progressive.controller import Controller, Deployer
from vroom_rollout.progressive.machine import RolloutState
from vroom_rollout.progressive.signals import SignalBatch
from vroom_rollout.progressive.store import RolloutStore, signals_key
from vroom_rollout.settings import RolloutSettings


@dataclass
class RecordingRegistry:
    """Aliases in a dict; every call recorded."""

    versions: set[str] = field(default_factory=lambda: {"1", "2", "3"})
    aliases: dict[str, str] = field(default_factory=lambda: {"champion": "1"})
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def alias(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    def champion(self) -> str | None:
        return self.aliases.get("champion")

    def stage_candidate(self, version: str) -> None:
        if version not in self.versions:
            raise NotFound(f"model has no version {version}")
        self.point("rollout", version)

    def point(self, alias: str, version: str) -> None:
        self.calls.append(("point", alias, version))
        self.aliases[alias] = version

    def clear(self, alias: str) -> None:
        self.calls.append(("clear", alias))
        self.aliases.pop(alias, None)

    def make_champion(
        self,
        version: str,
        previous: str | None,
        reason: str,  # noqa: ARG002
    ) -> ModelPromoted:
        self.point("champion", version)
        self.tags[(version, "promotion")] = "champion"
        return ModelPromoted(model_name="m", version=version, run_id="r", previous_version=previous)

    def record_rollback(self, version: str, reason: str) -> None:
        self.calls.append(("record_rollback", version, reason))
        self.tags[(version, "rollback_reason")] = reason


@dataclass
class ScriptedDeployer:
    """Ready at once unless told otherwise; every call recorded."""

    backend: BackendName = "local"
    candidate_error: Exception | None = None
    candidate_ready_after: int = 0
    calls: list[tuple[str, ...]] = field(default_factory=list)
    serving: str | None = None
    announced: list[bool] = field(default_factory=list)
    """Per serve_champion call: whether a model-promoted event preceded it."""
    _polls: int = 0

    def deploy_candidate(self, version: str) -> None:
        self.calls.append(("deploy_candidate", version))
        if self.candidate_error is not None:
            raise self.candidate_error

    def candidate_ready(self, version: str) -> str | None:
        self._polls += 1
        return f"v{version} ready" if self._polls > self.candidate_ready_after else None

    def serve_champion(self, version: str, *, announced: bool = False) -> None:
        self.calls.append(("serve_champion", version))
        self.announced.append(announced)
        self.serving = version

    def champion_serves(self, version: str) -> str | None:
        return f"champion serves v{version}" if self.serving == version else None

    def remove_candidate(self) -> str:
        self.calls.append(("remove_candidate",))
        return "removed"


# --- driving a controller by hand ----------------------------------------------------------


class Clock:
    """Wall time that moves only when a test says (requests carry real timestamps)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_controller(  # noqa: PLR0917
    settings: RolloutSettings,
    store: RolloutStore,
    deployer: Deployer,
    registry: RecordingRegistry,
    clock: Clock,
    owner: str = "c1",
) -> Controller:
    controller = Controller(
        settings,
        store,
        deployer,
        registry,
        owner=owner,
        clock=clock,  # type: ignore[arg-type]
    )
    assert store.acquire(owner, settings.rollout_lease_ttl_s) or store.leader() != owner
    return controller


def send(store: RolloutStore, action: str, **fields: object) -> str:
    return store.request(
        RolloutRequested(model_name=store.model_name, action=action, requested_by="test", **fields)  # type: ignore[arg-type]
    )


def feed(client: redis.Redis, state: RolloutState, **signals: float) -> None:
    """The counts a gateway would flush for the current step (through HINCRBY)."""
    batch = SignalBatch()
    key = signals_key(state.model_name, state.id, state.step_name)
    n = int(signals.get("n", 40))
    for _ in range(n):
        batch.observe(key, state.champion_version or "", 2.0, ok=True)
        batch.observe(key, state.candidate_version or "", signals.get("candidate_ms", 2.0), ok=True)
        batch.compare(key, state.candidate_version or "", signals.get("gap", 0.1))
    for _ in range(int(signals.get("errors", 0))):
        batch.observe(key, state.candidate_version or "", 0.0, ok=False)
    for hash_key, fields in batch.drain().items():
        for name, count in fields.items():
            client.hincrby(hash_key, name, count)


def announced(client: redis.Redis) -> list[RolloutProgressed]:
    return [
        event
        for _id, fields in client.xrange(Stream.ROLLOUTS)
        if isinstance(event := decode(fields), RolloutProgressed)
    ]
