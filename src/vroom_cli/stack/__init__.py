"""The local stack: Redis, MLflow (and later the services) under one supervisord.

``up``/``down``/``status`` are the Python API (CLI and test fixtures use them);
``register`` adds the matching ``vroom`` commands. Services are declared once, in
``services.SERVICES``.
"""

from vroom_cli.stack.cli import register
from vroom_cli.stack.control import (
    ServiceStatus,
    StackStatus,
    check_health,
    down,
    port_in_use,
    status,
    up,
)
from vroom_cli.stack.errors import PortInUse, ServiceFailedToStart, SupervisorUnavailable
from vroom_cli.stack.services import SERVICES, ServiceSpec, find_redis_server

__all__ = [
    "SERVICES",
    "PortInUse",
    "ServiceFailedToStart",
    "ServiceSpec",
    "ServiceStatus",
    "StackStatus",
    "SupervisorUnavailable",
    "check_health",
    "down",
    "find_redis_server",
    "port_in_use",
    "register",
    "status",
    "up",
]
