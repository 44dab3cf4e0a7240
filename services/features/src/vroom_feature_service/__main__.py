"""``python -m vroom_feature_service``: serve the feature service with uvicorn.

Binds ``VROOM_HOST:VROOM_FEATURE_SERVICE_PORT`` (default 127.0.0.1:8082); every other
setting (Redis URL, offline store path, Feast registry) comes from the same
``VROOM_*`` variables as the rest of the system.
"""

from __future__ import annotations

from vroom_common.http import serve
from vroom_common.settings import get_settings
from vroom_feature_service.app import create_app


def main() -> None:
    serve(
        "vroom-feature-service",
        create_app,
        lambda settings: settings.feature_service_port,
        get_settings,
    )


if __name__ == "__main__":
    main()
