"""In-test stand-ins for the registry and the serving side of a rollout, for tests about
the controller itself (the real ones are tested against MLflow, a predictor and a fake
Kubernetes API server)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vroom_common.errors import NotFound
from vroom_common.events import ModelPromoted
from vroom_rollout.base import BackendName


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
    _polls: int = 0

    def deploy_candidate(self, version: str) -> None:
        self.calls.append(("deploy_candidate", version))
        if self.candidate_error is not None:
            raise self.candidate_error

    def candidate_ready(self, version: str) -> str | None:
        self._polls += 1
        return f"v{version} ready" if self._polls > self.candidate_ready_after else None

    def serve_champion(self, version: str) -> None:
        self.calls.append(("serve_champion", version))
        self.serving = version

    def champion_serves(self, version: str) -> str | None:
        return f"champion serves v{version}" if self.serving == version else None

    def remove_candidate(self) -> str:
        self.calls.append(("remove_candidate",))
        return "removed"
