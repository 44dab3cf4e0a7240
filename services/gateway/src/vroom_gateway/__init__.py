"""HTTP gateway (FastAPI): the public API.

``create_app(settings)`` (in :mod:`vroom_gateway.app`) builds the app; nothing is
built at import time. See ``docs/gateway.md``.
"""
