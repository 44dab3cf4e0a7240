"""The message in an error response of a service we call, whatever its framework.

FastAPI answers ``{"detail": ...}``, KServe ``{"error": ...}``, Airflow's problem JSON
``{"detail": ..., "title": ...}``; anything else (a proxy's HTML page, plain text) is
quoted by its start.
"""

from __future__ import annotations

from typing import Final

import orjson

#: Keys holding the message, in the order they are tried.
MESSAGE_KEYS: Final = ("detail", "error", "message", "title")
#: How much of a body without a message is quoted.
QUOTED_CHARS: Final = 500


def error_message(body: bytes | str, fallback: str = "") -> str:
    """The service's own message in ``body``, else its start, else ``fallback``."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        for key in MESSAGE_KEYS:
            if parsed.get(key):
                return str(parsed[key])
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.strip()[:QUOTED_CHARS] or fallback
