"""The plumbing of the local fake API servers (Kubernetes, Batch): a JSON HTTP server on
a free loopback port that records every request and lets a fake answer it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any


class JsonFake(Protocol):
    """A fake server's state: where it listens and what it was asked."""

    url: str
    requests: list[Recorded]


FakeT = TypeVar("FakeT", bound=JsonFake)
Respond = Callable[[Recorded], tuple[int, Any]]


def _handler(requests: list[Recorded], respond: Respond) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Recorded(
                self.command,
                parts.path,
                parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            requests.append(request)
            status, answer = respond(request)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve_json(fake: FakeT, respond: Respond) -> Iterator[FakeT]:
    """Run ``fake`` on a free loopback port (``fake.url``) for the block; every request
    is appended to ``fake.requests`` and answered by ``respond``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake.requests, respond))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
