"""Free loopback ports for the servers a test starts."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free right now (held together so they are distinct)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
