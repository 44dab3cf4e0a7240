"""Progress reporting for the pipelines: rich spinners on a terminal, log lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from rich.console import Console

log = structlog.get_logger(__name__)


class Progress:
    """Shows each long step while it runs and how long it took.

    On a terminal a rich spinner runs during the step; otherwise (CI, containers) a
    structured log line marks its end, so logs still say where time went.
    """

    def __init__(self, console: Console | None) -> None:
        self._console = console

    @classmethod
    def silent(cls) -> Progress:
        return cls(None)

    @classmethod
    def for_terminal(cls) -> Progress:
        return cls(Console(stderr=True))

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        started = time.perf_counter()
        if self._console is not None and self._console.is_terminal:
            with self._console.status(title):
                yield
            self._console.print(
                f"[green]✓[/] {title} [dim]({time.perf_counter() - started:.1f}s)[/]"
            )
        else:
            yield
            if self._console is not None:
                self._console.print(f"✓ {title} ({time.perf_counter() - started:.1f}s)")
        log.debug("step done", step=title, seconds=round(time.perf_counter() - started, 3))
