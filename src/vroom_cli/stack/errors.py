"""Why the local stack could not do what was asked, in terms a user can act on."""

from __future__ import annotations

from vroom_common.errors import Conflict, DependencyUnavailable


class PortInUse(Conflict):
    """A port a service must bind is held by a process that is not ours."""

    def __init__(self, service: str, port: int, env_var: str) -> None:
        super().__init__(
            f"port {port} ({service}) is already in use by another process; "
            f"stop it or choose another port with {env_var}"
        )
        self.service = service
        self.port = port


class ServiceFailedToStart(DependencyUnavailable):
    """A service exited or stayed unhealthy while ``up`` waited for it; carries its log tail."""

    def __init__(self, service: str, reason: str, log_tail: str) -> None:
        tail = f"\n--- last lines of its log ---\n{log_tail}" if log_tail else ""
        super().__init__(service, f"{reason}{tail}")
        self.service = service
        self.reason = reason
        self.log_tail = log_tail


class SupervisorUnavailable(DependencyUnavailable):
    """supervisord could not be started or reached on its socket."""

    def __init__(self, detail: str) -> None:
        super().__init__("supervisord", detail)
