"""Error types named by meaning, each mapped once to its HTTP and gRPC status.

Services raise these; one exception handler per transport turns them into a response
(``http_status`` for FastAPI, ``grpc_status`` — a ``grpc.StatusCode`` name — for gRPC).
Nothing else decides status codes.
"""

from __future__ import annotations

from typing import ClassVar


class VroomError(Exception):
    """Base of every error we raise on purpose."""

    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(VroomError):
    """The caller sent something that breaks a rule; the message names field and rule."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class NotFound(VroomError):
    """The named thing (vehicle, model, resource) does not exist."""

    http_status = 404
    grpc_status = "NOT_FOUND"


class PermissionDenied(VroomError):
    """We are not allowed to do this (e.g. RBAC forbids patching a Kubernetes resource)."""

    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class Conflict(VroomError):
    """The request clashes with current state (a pipeline already running, a stale write)."""

    http_status = 409
    grpc_status = "ABORTED"


class ModelNotReady(VroomError):
    """No model is loaded yet (nothing promoted, or the load is still running)."""

    http_status = 503
    grpc_status = "UNAVAILABLE"


class DependencyUnavailable(VroomError):
    """A service we depend on (Redis, MLflow, the predictor, ...) cannot be reached."""

    http_status = 503
    grpc_status = "UNAVAILABLE"

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} is unavailable: {detail}")
        self.dependency = dependency


class PipelineFailed(VroomError):
    """A batch pipeline step failed; the message says which step and why."""


class DataValidationError(InvalidInput):
    """Input files break the data contract. Carries every problem found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:20]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(
            f"{len(problems)} problem(s) in the input data:\n" + "\n".join(shown) + more
        )
        self.problems = problems
