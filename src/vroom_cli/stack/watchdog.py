"""A supervisord event listener that never leaves a crashing service stopped.

supervisord restarts a service that dies after it has started, but one that keeps dying
while it starts (faster than ``startsecs``) is given up after ``startretries`` tries and
left FATAL. Kubernetes keeps retrying such a container with a growing back-off
(CrashLoopBackOff); this listener does the same for the local stack: every FATAL service
that had been running is started again after ``base * 2**n`` seconds (capped at ``max``),
``n`` counting the give-ups since it last stayed up for a while.

It also keeps the book ``vroom status`` shows: how often each service was restarted and
how it last exited, in a JSON file of the state directory (written atomically).

Run by supervisord as ``main()`` with ``BOOK --base S --max S``; it
speaks the listener protocol on stdin/stdout and logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import structlog
from supervisor import childutils
from supervisor.xmlrpc import Faults

from vroom_common.logs import configure_logging

#: Name of the listener in supervisord's config; its own state changes are not tracked.
NAME: Final = "watchdog"
#: A service that stayed up this long before it died starts over at the shortest delay.
_STABLE_S: Final = 60.0
#: Starts from these states are restarts (a start from STOPPED is someone's ``up``).
_RESTART_FROM: Final = frozenset({"EXITED", "BACKOFF", "FATAL"})

#: supervisord's ``spawnerr`` for a process that ran and died while starting; its exit
#: status says more than this text.
_QUICK_EXIT: Final = "Exited too quickly"
_TAIL_BYTES: Final = 16_384

log = structlog.get_logger("vroom.watchdog")


@dataclass
class ServiceRecord:
    """What the book says about one service."""

    restarts: int = 0
    #: How the last unplanned exit happened ("exit status 3", "terminated by SIGKILL"),
    #: '' if none.
    last_exit: str = ""
    #: Unix time of that exit (0 if none).
    last_exit_at: float = 0.0
    #: Unix time of the next restart this listener has scheduled (0 if none).
    restart_at: float = 0.0


def read_book(path: Path) -> dict[str, ServiceRecord]:
    """The book as last written ({} when there is none or it cannot be read)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    known = set(ServiceRecord.__dataclass_fields__)
    return {
        str(name): ServiceRecord(**{k: v for k, v in entry.items() if k in known})
        for name, entry in raw.items()
        if isinstance(entry, dict)
    }


def describe_exit(status: int) -> str:
    """supervisord's exit status as words (it reports -1 for a death by signal)."""
    return "killed by a signal" if status < 0 else f"exit status {status}"


@dataclass
class _Tracked:
    record: ServiceRecord = field(default_factory=ServiceRecord)
    #: Reached RUNNING since its last explicit stop: only such a service is revived, so
    #: one that never came up (``vroom up`` reports that itself) is left alone.
    armed: bool = False
    running_since: float = 0.0
    level: int = 0


class Watchdog:
    """The listener's state and its reaction to each event (no I/O but ``rpc``/book)."""

    def __init__(self, rpc: Any, book: Path, base: float, cap: float) -> None:
        self.rpc = rpc
        self.book = book
        self.base = base
        self.cap = cap
        self.services: dict[str, _Tracked] = {
            name: _Tracked(record=record) for name, record in read_book(book).items()
        }

    def handle(self, event: str, payload: Mapping[str, str], now: float) -> None:
        name = payload.get("processname", "")
        if event.startswith("PROCESS_STATE_") and name and name != NAME:
            self._on_state(event.removeprefix("PROCESS_STATE_"), name, payload, now)
        self._restart_due(now)

    def _on_state(self, state: str, name: str, payload: Mapping[str, str], now: float) -> None:
        tracked = self.services.setdefault(name, _Tracked())
        record = tracked.record
        if state == "RUNNING":
            tracked.armed = True
            tracked.running_since = now
        elif state in {"STOPPED", "STOPPING"}:
            tracked.armed = False
            record.restart_at = 0.0
        elif state == "STARTING" and payload.get("from_state") in _RESTART_FROM:
            record.restarts += 1
        elif state in {"EXITED", "BACKOFF"}:
            if state == "EXITED" and payload.get("expected") == "1":
                tracked.armed = False  # it finished on purpose
            else:
                record.last_exit = self._exit_reason(name)
                record.last_exit_at = now
            if tracked.running_since and now - tracked.running_since >= _STABLE_S:
                tracked.level = 0
            tracked.running_since = 0.0
        elif state == "FATAL" and tracked.armed:
            self._schedule(name, tracked, now)
        self._save()

    def _schedule(self, name: str, tracked: _Tracked, now: float) -> None:
        delay = min(self.cap, self.base * 2**tracked.level)
        tracked.level += 1
        tracked.record.restart_at = now + delay
        log.info("restart scheduled", service=name, delay_s=delay, give_ups=tracked.level)

    def _exit_reason(self, name: str) -> str:
        try:
            info = self.rpc.getProcessInfo(name)
            spawnerr = str(info.get("spawnerr") or "")
            if spawnerr and not spawnerr.startswith(_QUICK_EXIT):
                return spawnerr  # it never ran: no command, no permission, ...
            # supervisord keeps no exit status for a death while starting, and only -1
            # for any signal; its log line names both ("exit status 4", "terminated by
            # SIGKILL"). The line is written before the event reaches us.
            tail = str(self.rpc.readLog(-_TAIL_BYTES, 0))
        except (OSError, xmlrpc.client.Error):
            return "exited"
        found = re.findall(rf"exited: {re.escape(name)} \((.+?); not expected\)", tail)
        if found:
            return str(found[-1])
        return describe_exit(int(info.get("exitstatus") or 0))

    def _restart_due(self, now: float) -> None:
        for name, tracked in self.services.items():
            due = tracked.record.restart_at
            if not due or due > now or not tracked.armed:
                continue
            tracked.record.restart_at = 0.0
            try:
                self.rpc.startProcess(name, False)
                log.info("restarted", service=name)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode == Faults.ALREADY_STARTED:
                    continue
                log.warning("restart failed", service=name, error=fault.faultString)
                tracked.record.last_exit = fault.faultString
                self._schedule(name, tracked, now)
            except OSError as exc:
                log.warning("supervisord unreachable", service=name, error=str(exc))
                self._schedule(name, tracked, now)
            self._save()

    def _save(self) -> None:
        data = {name: asdict(tracked.record) for name, tracked in self.services.items()}
        staging = self.book.with_suffix(".tmp")
        staging.write_text(json.dumps(data, indent=1, sort_keys=True))
        staging.replace(self.book)


def _tokens(line: str) -> dict[str, str]:
    """``key:value`` tokens of a header line. supervisord's own parser splits on every
    colon, and our ``identifier`` (``vroom:<state dir>``) holds one."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def _serve(watchdog: Watchdog, stdin: TextIO, stdout: TextIO) -> None:
    while True:
        childutils.listener.ready(stdout)
        headers = _tokens(stdin.readline())
        body = stdin.read(int(headers.get("len", "0")))
        try:
            first, _, _data = body.partition("\n")
            watchdog.handle(headers.get("eventname", ""), _tokens(first), time.time())
        except Exception:  # one bad event must not end supervision
            log.exception("event not handled", event=headers.get("eventname"))
        childutils.listener.ok(stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("book", type=Path)
    parser.add_argument("--base", type=float, required=True)
    parser.add_argument("--max", type=float, required=True)
    args = parser.parse_args(argv)
    configure_logging("json")
    rpc = childutils.getRPCInterface(os.environ).supervisor
    _serve(Watchdog(rpc, args.book, args.base, args.max), sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
