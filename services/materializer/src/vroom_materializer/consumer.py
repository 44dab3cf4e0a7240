"""The materializer: ``vehicle-saved`` entries of ``Stream.VEHICLES`` → the online store.

Delivery is durable and at-least-once; processing is idempotent, so a replay leaves
the same state:

- Entries are read through the consumer group ``MATERIALIZER_GROUP``. An entry is
  acknowledged only after its vehicle's features are in the online store; the
  acknowledgement and the ``vehicle-materialized`` notification go in one
  ``MULTI``/``EXEC``, so a crash can never do one without the other (a processed
  event is announced exactly once).
- An entry that cannot be processed (not JSON, wrong type, failed validation, newer
  schema, or delivered ``max_deliveries`` times without an ack) moves to
  ``Stream.VEHICLES_DEAD_LETTER`` with its error, in the same transaction as its ack:
  it never blocks the stream.
- Redis or database outages are waited out with backoff; nothing unfinished is
  acknowledged.

Start-up order, chosen so each backlog entry is written and announced once:

1. apply the Feast definitions and create the group (id ``0``: a group created
   after events were published still delivers them);
2. this consumer's own pending entries (a restart after a crash or SIGKILL);
3. other consumers' entries idle longer than ``min_idle_ms`` (``XAUTOCLAIM``);
4. the backlog of never-delivered entries;
5. reconciliation: every vehicle in the database missing from the online store is
   written (vehicles whose event was never published, or was trimmed by the cap).
   It runs after the drain, so it finds nothing the events already wrote;
6. the loop: blocking reads, periodic reclaim, reconciliation again after a Redis
   outage (events published meanwhile may be lost) and every ``reconcile_interval_s``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar, cast

import pandas as pd
import redis
import sqlalchemy.exc
import structlog
from feast import FeatureStore
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from vroom_common import events
from vroom_common.events import MATERIALIZER_GROUP, SCHEMA_VERSION, Stream, VehicleSaved
from vroom_common.redis_clients import redis_client
from vroom_common.settings import Settings
from vroom_db import make_engine, make_session_factory, migrate
from vroom_db.queries import raw_vehicles, vehicle_ids
from vroom_features.online import online_rows, read_online, split_found, write_online
from vroom_features.store import apply_definitions, open_store
from vroom_materializer.health import Heartbeat, Phase, heartbeat_path
from vroom_materializer.options import MaterializerOptions

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Errors that say "a dependency is away", not "this entry is bad": retried until they
#: clear (or a stop is requested), never a reason to dead-letter.
TRANSIENT_ERRORS: Final = (
    redis.ConnectionError,  # BusyLoadingError (Redis restarting) is one too
    redis.TimeoutError,
    redis.ReadOnlyError,  # a replica during failover
    sqlalchemy.exc.OperationalError,  # database locked, gone, connection lost
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
)

#: Removes consumers that hold nothing and have been idle for ARGV[3] ms, atomically (a
#: consumer that reads between a check and a delete would lose its pending entries).
_PRUNE_SCRIPT: Final = """
local removed = 0
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
  if f['name'] ~= ARGV[2] and f['pending'] == 0 and f['idle'] > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed = removed + 1
  end
end
return removed
"""

#: A stream entry: its id and its fields (empty when the entry was trimmed away).
Entry = tuple[str, dict[bytes, bytes]]


class Outcome(StrEnum):
    """What became of one entry (or, for ``RECONCILED``, one vehicle)."""

    MATERIALIZED = "materialized"
    VEHICLE_GONE = "vehicle-gone"  # deleted from the database since: nothing to write
    DEAD_LETTERED = "dead-lettered"
    TRIMMED = "trimmed"  # removed by the stream cap before we read it
    RECONCILED = "reconciled"


@dataclass(frozen=True)
class Processed:
    entry_id: str | None  # None for a vehicle written by reconciliation
    vehicle_id: int | None
    outcome: Outcome
    error: str | None = None


class _Stopped(Exception):
    """A stop was requested while waiting for a dependency; the work in hand is unfinished."""


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _describe(exc: Exception) -> str:
    """A one-line reason: pydantic's errors without their URLs, others as ``Type: msg``."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
    return f"{type(exc).__name__}: {exc}"


def parse_entry(fields: Mapping[bytes, bytes]) -> VehicleSaved | str:
    """The entry's ``VehicleSaved`` event, or why it is not a valid one."""
    try:
        event = events.decode(dict(fields))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return _describe(exc)
    if not isinstance(event, VehicleSaved):
        return f"unexpected {event.type.value!r} event on {Stream.VEHICLES.value}"
    if event.schema_version > SCHEMA_VERSION:
        return (
            f"schema_version {event.schema_version} is newer than this materializer "
            f"understands ({SCHEMA_VERSION})"
        )
    return event


class Materializer:
    """One consumer of the ``materializer`` group. :meth:`run` blocks until :meth:`stop`.

    Args:
        settings: Redis, database, Feast and state-dir locations; ``stream_maxlen``
            caps the notification and dead-letter streams.
        options: Consumer name, batch size, timeouts (default: from the environment).
    """

    def __init__(self, settings: Settings, options: MaterializerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or MaterializerOptions()
        self.consumer = self.options.consumer
        self.stats: Counter[str] = Counter()
        self.heartbeat = Heartbeat(heartbeat_path(settings.state_dir), self.consumer)
        # A blocking read waits block_ms: the socket must wait longer than that. Longer
        # outages are retried by the loop (backoff, heartbeat, stop), not the client.
        self._redis = redis_client(settings, block_s=self.options.block_ms / 1000)
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._store: FeatureStore | None = None
        self._phase: Phase = "starting"
        self._stop_requested = False
        self._reconcile_due = False
        self._log = log.bind(consumer=self.consumer)

    # --- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the entry (batch) in hand. Safe in a signal handler."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def run(self) -> None:
        """Start up (see the module docstring for the order), then consume until stopped."""
        started = time.monotonic()
        self._log.info("materializer starting", stream=Stream.VEHICLES.value)
        try:
            self._set_phase("starting")
            if self.stopping:
                raise _Stopped
            self._call("prepare", self.prepare)
            self._log.info("prepared", duration_s=round(time.monotonic() - started, 3))
            started = time.monotonic()
            self._set_phase("recovering")
            own = self._recover_own()
            reclaimed = self._reclaim()
            backlog = self._drain()
            self._log.info(
                "recovered",
                own_pending=own,
                reclaimed=reclaimed,
                backlog=backlog,
                duration_s=round(time.monotonic() - started, 3),
            )
            if not self.stopping:
                self.reconcile()
                self._serve()
        except _Stopped:
            self._log.info("stopped before finishing; unfinished entries stay pending")
        finally:
            self._set_phase("stopped")
            self.close()
        self._log.info("materializer stopped", **self.stats)

    def prepare(self) -> None:
        """Open the database and Feast, register the definitions, create the group."""
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
            self._sessions = make_session_factory(self._engine)
        migrate(self._engine)
        if self._store is None:
            self._store = open_store(self.settings)
        apply_definitions(self._store, self.settings)
        self._ensure_group()

    def close(self) -> None:
        self._redis.close()
        if self._engine is not None:
            self._engine.dispose()

    # --- the phases ------------------------------------------------------------------

    def _recover_own(self) -> int:
        """Entries delivered to this consumer name and never acknowledged."""
        start, count = "0-0", 0
        while not self.stopping:
            entries = self._call("read own pending entries", functools.partial(self._read, start))
            if not entries:
                break
            self._handle(entries, self._overdelivered_retrying(entries))
            start, count = entries[-1][0], count + len(entries)
        return count

    def _reclaim(self) -> int:
        """Take over other consumers' entries idle longer than ``min_idle_ms``, process them."""
        start, count = "0-0", 0
        while not self.stopping:
            page = self._call("reclaim", functools.partial(self._autoclaim, start))
            start, entries, deleted = page
            if deleted:
                self._log.warning(
                    "pending entries were trimmed before processing; reconciliation covers them",
                    entries=len(deleted),
                )
                self._reconcile_due = True
            if entries:
                self._handle(entries, self._overdelivered_retrying(entries))
                count += len(entries)
            if start == "0-0":
                break
        return count

    def _drain(self) -> int:
        """Entries never delivered to any consumer, until none is left."""
        count = 0
        while not self.stopping:
            entries = self._call("read backlog", functools.partial(self._read, ">"))
            if not entries:
                break
            self._handle(entries)
            count += len(entries)
        return count

    def _serve(self) -> None:
        self._set_phase("running")
        self._log.info("materializer running")
        interval = self.options.reconcile_interval_s
        next_claim = time.monotonic() + self.options.claim_interval_s
        next_reconcile = time.monotonic() + interval if interval else float("inf")
        while not self.stopping:
            self._beat()
            now = time.monotonic()
            if now >= next_claim:
                self._reclaim()
                self._call("prune consumers", self._prune_consumers)
                next_claim = now + self.options.claim_interval_s
            if self._reconcile_due or now >= next_reconcile:
                self._drain()  # first, so reconciliation does not race the events
                self.reconcile()
                next_reconcile = time.monotonic() + interval if interval else float("inf")
                self._set_phase("running")
            entries = self._call("read", functools.partial(self._read, ">", self.options.block_ms))
            if entries:
                self._handle(entries)

    # --- processing ------------------------------------------------------------------

    def process(
        self, entries: Sequence[Entry], rejected: Mapping[str, str] | None = None
    ) -> list[Processed]:
        """Write the entries' vehicles, then dead-letter, acknowledge and announce in one
        transaction. ``rejected`` maps entry ids to dead-letter without processing."""
        rejected = rejected or {}
        dead: list[tuple[Entry, str]] = []
        saved: list[tuple[str, int]] = []
        results: dict[str, Processed] = {}
        for entry in entries:
            entry_id, fields = entry
            if not fields:
                results[entry_id] = Processed(entry_id, None, Outcome.TRIMMED)
                continue
            parsed = rejected.get(entry_id) or parse_entry(fields)
            if isinstance(parsed, str):
                dead.append((entry, parsed))
            else:
                saved.append((entry_id, parsed.vehicle_id))
        written = set(self._write_vehicles(sorted({vid for _, vid in saved})))
        announced = list(dict.fromkeys(vid for _, vid in saved if vid in written))
        maxlen = self.settings.stream_maxlen
        with self._redis.pipeline(transaction=True) as pipe:
            for (entry_id, fields), error in dead:
                dead_fields: dict[Any, Any] = events.dead_letter_fields(fields, error, entry_id)
                pipe.xadd(Stream.VEHICLES_DEAD_LETTER, dead_fields, maxlen=maxlen, approximate=True)
            pipe.xack(Stream.VEHICLES, MATERIALIZER_GROUP, *(entry_id for entry_id, _ in entries))
            for vid in announced:
                events.queue_publish(pipe, events.VehicleMaterialized(vehicle_id=vid), maxlen)
            pipe.execute()
        for (entry_id, _), error in dead:
            results[entry_id] = Processed(entry_id, None, Outcome.DEAD_LETTERED, error)
        for entry_id, vid in saved:
            outcome = Outcome.MATERIALIZED if vid in written else Outcome.VEHICLE_GONE
            results[entry_id] = Processed(entry_id, vid, outcome)
        ordered = [results[entry_id] for entry_id, _ in entries]
        for item in ordered:
            self._record(item)
        return ordered

    def reconcile(self) -> int:
        """Write every vehicle in the database that the online store lacks; returns how many."""
        self._set_phase("reconciling")
        self._reconcile_due = False
        started = time.monotonic()
        ids = self._call("list vehicles", self._all_vehicle_ids)
        missing: list[int] = []
        for chunk in _chunks(ids, self.options.reconcile_chunk):
            if self.stopping:
                raise _Stopped
            frame = self._call("read the online store", functools.partial(self._read_online, chunk))
            missing.extend(split_found(frame)[1])
        written = 0
        for chunk in _chunks(missing, self.options.batch_size):
            if self.stopping:
                raise _Stopped
            write = functools.partial(self._write_missing, chunk)
            written += self._call("write missing vehicles", write)
            self._beat()
        self._log.info(
            "reconciled",
            vehicles=len(ids),
            missing=len(missing),
            written=written,
            duration_s=round(time.monotonic() - started, 3),
        )
        return written

    def _handle(self, entries: Sequence[Entry], rejected: Mapping[str, str] | None = None) -> None:
        """:meth:`process`, retried; a batch that keeps failing is split, and a single entry
        that keeps failing (not for a dependency outage) is dead-lettered."""
        self._beat()
        try:
            self._call(
                "process entries",
                functools.partial(self.process, entries, rejected),
                attempts=self.options.max_attempts,
            )
        except _Stopped:
            raise
        except Exception as exc:
            if len(entries) > 1:
                self._log.warning(
                    "batch keeps failing; processing its entries one by one",
                    entries=len(entries),
                    error=_describe(exc),
                )
                for entry in entries:
                    self._handle([entry], rejected)
                return
            entry_id = entries[0][0]
            self._log.exception("entry keeps failing; dead-lettering it", entry_id=entry_id)
            reason = f"failed {self.options.max_attempts} times: {_describe(exc)}"
            self._call("dead-letter", functools.partial(self.process, entries, {entry_id: reason}))

    def _record(self, item: Processed) -> None:
        self.stats[item.outcome.value] += 1
        fields: dict[str, Any] = {
            "entry_id": item.entry_id,
            "vehicle_id": item.vehicle_id,
            "outcome": item.outcome.value,
        }
        if item.outcome is Outcome.DEAD_LETTERED:
            self._log.warning("vehicle event", error=item.error, **fields)
        elif item.outcome is Outcome.TRIMMED:
            self._reconcile_due = True
            self._log.warning("vehicle event", **fields)
        else:
            self._log.info("vehicle event", **fields)

    # --- Redis -----------------------------------------------------------------------

    def _ensure_group(self) -> None:
        if events.ensure_group(self._redis, Stream.VEHICLES, MATERIALIZER_GROUP):
            self._log.info("consumer group created", group=MATERIALIZER_GROUP)

    def _read(self, start: str, block_ms: int | None = None) -> list[Entry]:
        """``XREADGROUP`` from ``start`` (``>``: new entries; an id: our pending after it)."""
        response = cast(
            list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None,
            self._redis.xreadgroup(
                MATERIALIZER_GROUP,
                self.consumer,
                {Stream.VEHICLES: start},
                count=self.options.batch_size,
                block=block_ms,
            ),
        )
        return [
            (events.text(entry_id), fields or {})
            for _stream, items in response or []
            for entry_id, fields in items
        ]

    def _autoclaim(self, start: str) -> tuple[str, list[Entry], list[str]]:
        """One ``XAUTOCLAIM`` page: (next start, claimed entries, ids trimmed meanwhile)."""
        response = cast(
            list[Any],
            self._redis.xautoclaim(
                Stream.VEHICLES,
                MATERIALIZER_GROUP,
                self.consumer,
                self.options.min_idle_ms,
                start_id=start,
                count=self.options.batch_size,
            ),
        )
        claimed = [(events.text(entry_id), fields or {}) for entry_id, fields in response[1]]
        deleted = [events.text(entry_id) for entry_id in (response[2] if len(response) > 2 else [])]
        return events.text(response[0]), claimed, deleted

    def _overdelivered_retrying(self, entries: Sequence[Entry]) -> dict[str, str]:
        return self._call("check deliveries", functools.partial(self._overdelivered, entries))

    def _overdelivered(self, entries: Sequence[Entry]) -> dict[str, str]:
        """Entries delivered more than ``max_deliveries`` times: each delivery ended in a
        crash or kill before the ack, so the entry itself is the likely cause."""
        pending = cast(
            list[dict[str, Any]],
            self._redis.xpending_range(
                Stream.VEHICLES,
                MATERIALIZER_GROUP,
                min=entries[0][0],
                max=entries[-1][0],
                count=len(entries),
                consumername=self.consumer,
            ),
        )
        limit = self.options.max_deliveries
        return {
            events.text(item["message_id"]): (
                f"delivered {item['times_delivered']} times without an acknowledgement "
                f"(limit {limit})"
            )
            for item in pending
            if int(item["times_delivered"]) > limit
        }

    def _prune_consumers(self) -> None:
        if not self.options.prune_idle_ms:
            return
        removed = self._redis.eval(
            _PRUNE_SCRIPT,
            1,
            Stream.VEHICLES,
            MATERIALIZER_GROUP,
            self.consumer,
            self.options.prune_idle_ms,
        )
        if removed:
            self._log.info("idle consumers without pending entries removed", consumers=removed)

    # --- database and online store -----------------------------------------------------

    def _session(self) -> Session:
        if self._sessions is None:
            raise RuntimeError("Materializer.prepare() was not called")
        return self._sessions()

    def _feast(self) -> FeatureStore:
        if self._store is None:
            raise RuntimeError("Materializer.prepare() was not called")
        return self._store

    def _all_vehicle_ids(self) -> list[int]:
        with self._session() as session:
            return vehicle_ids(session)

    def _read_online(self, ids: Sequence[int]) -> pd.DataFrame:
        return read_online(self._feast(), ids)

    def _write_vehicles(self, ids: Sequence[int]) -> list[int]:
        """Compute and push the features of those of ``ids`` still in the database."""
        if not ids:
            return []
        with self._session() as session:
            rows = raw_vehicles(session, ids)
        if rows:
            write_online(self._feast(), online_rows(pd.DataFrame(rows)))
        return [int(row["vehicle_id"]) for row in rows]

    def _write_missing(self, ids: Sequence[int]) -> int:
        written = self._write_vehicles(ids)
        with self._redis.pipeline(transaction=True) as pipe:
            for vid in written:
                events.queue_publish(
                    pipe, events.VehicleMaterialized(vehicle_id=vid), self.settings.stream_maxlen
                )
            pipe.execute()
        for vid in written:
            self._record(Processed(None, vid, Outcome.RECONCILED))
        return len(written)

    # --- retries, heartbeat ------------------------------------------------------------

    def _is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, TRANSIENT_ERRORS):
            return True
        # The group is gone: Redis restarted without persistence, or the key was deleted.
        return isinstance(exc, redis.ResponseError) and str(exc).startswith("NOGROUP")

    def _call(self, what: str, fn: Callable[[], T], attempts: int | None = None) -> T:
        """``fn()``; transient errors are retried with backoff until they clear, others
        ``attempts`` times in all (default: not retried). Raises :class:`_Stopped` when a
        stop is requested while a dependency is away."""

        def should_retry(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None:
                return False
            return self._is_transient(exc) or (
                attempts is not None and state.attempt_number < attempts
            )

        retrying = Retrying(
            retry=should_retry,
            wait=wait_exponential_jitter(initial=0.2, max=self.options.max_backoff_s),
            stop=lambda _state: self.stopping,
            sleep=self._sleep,
            before_sleep=functools.partial(self._before_retry, what),
            reraise=True,
        )
        try:
            return retrying(fn)
        except Exception as exc:
            if self.stopping and self._is_transient(exc):
                raise _Stopped from exc
            raise

    def _before_retry(self, what: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        reason = _describe(exc) if isinstance(exc, Exception) else "unknown"
        self._log.warning(
            "retrying", what=what, attempt=state.attempt_number, wait_s=round(wait, 2), error=reason
        )
        self.heartbeat.beat("waiting", f"{what}: {reason}"[:300], self.stats)
        if isinstance(exc, redis.RedisError):
            # Events published while Redis was away may never have been written.
            self._reconcile_due = True
        if isinstance(exc, redis.ResponseError) and str(exc).startswith("NOGROUP"):
            with contextlib.suppress(redis.RedisError):  # still away: the next attempt tells
                self._ensure_group()

    def _sleep(self, seconds: float) -> None:
        """Sleep in short slices, so a stop request ends a backoff early."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def _set_phase(self, phase: Phase) -> None:
        self._phase = phase
        self.heartbeat.beat(phase, counters=self.stats)

    def _beat(self) -> None:
        self.heartbeat.beat(self._phase, counters=self.stats)
