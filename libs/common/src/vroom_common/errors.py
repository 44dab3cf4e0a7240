"""Error types named by meaning, each mapped once to its HTTP and gRPC status.

Services raise these; one exception handler per transport turns them into a response
(``http_status`` for FastAPI, ``grpc_status`` — a ``grpc.StatusCode`` name — for gRPC).
Nothing else decides status codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class VroomError(Exception):
    """Base of every error we raise on purpose.

    ``headers`` are sent with the HTTP response (``WWW-Authenticate``, ``Retry-After``).
    """

    http_status: ClassVar[int] = 500
    grpc_status: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class InvalidInput(VroomError):
    """The caller sent something that breaks a rule; the message names field and rule."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"


class NotFound(VroomError):
    """The named thing (vehicle, model, resource) does not exist."""

    http_status = 404
    grpc_status = "NOT_FOUND"


class Unauthenticated(VroomError):
    """The caller gave no credentials where they are required."""

    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class PermissionDenied(VroomError):
    """Not allowed: the caller's credentials are wrong, or RBAC forbids what we tried
    (e.g. patching a Kubernetes resource)."""

    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class PayloadTooLarge(VroomError):
    """A request body is over the configured cap; the message names the limit."""

    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class RequestTimeout(VroomError):
    """The client took longer than allowed to send its request."""

    http_status = 408
    grpc_status = "DEADLINE_EXCEEDED"


class RateLimited(VroomError):
    """The caller is over a rate or concurrency limit; ``Retry-After`` says when to retry."""

    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})
        self.retry_after_s = max(1, retry_after_s)


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
