"""``python -m vroom_gateway``: serve the gateway with uvicorn.

Binds ``VROOM_HOST:VROOM_PORT`` (``SERVING_PORT`` too; default 127.0.0.1:8000); every
other setting comes from the same ``VROOM_*`` / ``SERVING_*`` variables.
"""

from __future__ import annotations

import uvicorn

from vroom_common.logs import configure_logging
from vroom_common.settings import get_settings
from vroom_gateway.app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.gateway_port,
        log_config=None,  # uvicorn's loggers go through configure_logging's handler
        access_log=False,
    )


if __name__ == "__main__":
    main()
