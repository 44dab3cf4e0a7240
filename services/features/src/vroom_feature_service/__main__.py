"""``python -m vroom_feature_service``: serve the feature service with uvicorn.

Binds ``VROOM_HOST:VROOM_FEATURE_SERVICE_PORT`` (default 127.0.0.1:8082); every other
setting (Redis URL, offline store path, Feast registry) comes from the same
``VROOM_*`` variables as the rest of the system.
"""

from __future__ import annotations

import uvicorn

from vroom_common.logs import configure_logging
from vroom_common.settings import get_settings
from vroom_feature_service.app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.feature_service_port,
        log_config=None,  # uvicorn's loggers go through configure_logging's handler
        access_log=False,
    )


if __name__ == "__main__":
    main()
