"""``python -m vroom_gateway``: serve the gateway with uvicorn.

Binds ``VROOM_HOST:VROOM_PORT`` (``SERVING_PORT`` too; default 127.0.0.1:8000); every
other setting comes from the same ``VROOM_*`` / ``SERVING_*`` variables.
"""

from __future__ import annotations

from vroom_common.http import serve
from vroom_gateway.app import create_app
from vroom_gateway.settings import get_gateway_settings


def main() -> None:
    serve("vroom-gateway", create_app, lambda settings: settings.gateway_port, get_gateway_settings)


if __name__ == "__main__":
    main()
