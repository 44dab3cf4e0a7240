"""The prediction log's drain: ``Stream.PREDICTIONS`` → date-partitioned Parquet.

The gateway appends what it served to the stream (``vroom_features.prediction_log``);
this drain, a thread of the materializer (the one writer of the state volume), reads it
through the consumer group ``PREDICTION_LOG_GROUP`` and writes
``vroom_features.prediction_files``. Delivery is at-least-once: entries are acknowledged
(and deleted: the stream holds only the backlog) once their rows are in a renamed,
fsynced file, and a drain restarted after a crash first rewrites its own
unacknowledged entries (readers drop the repeated rows).

Entries accumulate for ``prediction_log_flush_s`` (or ``prediction_log_flush_rows``
rows), so a busy gateway makes a few files a minute rather than one per request; every
``prediction_log_housekeeping_s`` past days are compacted and the retention and size
limits applied. An entry that is not a record is logged and acknowledged: it can never
become one, and must not hold the stream back. While Redis or the disk is away the
drain waits with backoff and loses nothing it has read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Final, cast

import redis
import structlog

from vroom_common.events import PREDICTION_LOG_GROUP, Stream, ensure_group, text
from vroom_common.redis_clients import redis_client
from vroom_common.settings import Settings
from vroom_features.prediction_files import compact, enforce_limits, table_of, write_parts
from vroom_features.prediction_log import RECORD_FIELD, LoggedPrediction, decode_record
from vroom_materializer.options import MaterializerOptions

log = structlog.get_logger(__name__)

#: Entries read at once.
READ_COUNT: Final = 500
#: Longest a blocking read waits, so a stop is seen within it.
BLOCK_MS: Final = 1000
#: Backoff while Redis or the disk fails: first and longest wait.
FIRST_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 10.0


class PredictionLogDrain:
    """One consumer of ``PREDICTION_LOG_GROUP``. :meth:`run` blocks until :meth:`stop`."""

    def __init__(self, settings: Settings, options: MaterializerOptions) -> None:
        self.root = settings.prediction_log_path
        self.options = options
        self.consumer = options.consumer
        self.stats: Counter[str] = Counter()
        self._redis = redis_client(settings, block_s=BLOCK_MS / 1000)
        self._stop = threading.Event()
        self._held: list[tuple[str, LoggedPrediction]] = []
        self._held_rows = 0
        self._invalid: list[str] = []
        self._log = log.bind(consumer=self.consumer, path=str(self.root))

    def stop(self) -> None:
        """Ask :meth:`run` to write what it holds and return. Safe in a signal handler."""
        self._stop.set()

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        self._log.info("prediction log drain starting", stream=Stream.PREDICTIONS.value)
        backoff = FIRST_BACKOFF_S
        # First the entries a crash left unacknowledged (ours, then other consumers' idle
        # ones: a replaced pod has a new name), then new ones.
        recovered = False
        flush_at = time.monotonic() + self.options.prediction_log_flush_s
        housekeeping_at = time.monotonic()
        while not self._stop.is_set():
            try:
                if not recovered:
                    self._ensure_group()
                    self._recover()
                    recovered = True
                elif self._held_rows < self.options.prediction_log_flush_rows:
                    self._read(">", block_ms=self._block_ms(flush_at))
                if self._due(flush_at):
                    self.flush()
                    flush_at = time.monotonic() + self.options.prediction_log_flush_s
                if time.monotonic() >= housekeeping_at:
                    self.housekeeping()
                    self._claim_idle()
                    housekeeping_at = time.monotonic() + self.options.prediction_log_housekeeping_s
                backoff = FIRST_BACKOFF_S
            except (redis.RedisError, OSError) as exc:
                self._log.warning(
                    "prediction log drain waiting", error=str(exc), retry_in_s=backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:  # a bug must not end the thread: the log would stop quietly
                self._log.exception("prediction log drain failed", retry_in_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        self._final_flush()
        self._log.info("prediction log drain stopped", **self.stats)

    def _block_ms(self, flush_at: float) -> int:
        if not self._held:
            return BLOCK_MS
        return max(10, min(BLOCK_MS, int((flush_at - time.monotonic()) * 1000)))

    def _due(self, flush_at: float) -> bool:
        if not (self._held or self._invalid):
            return False
        full = self._held_rows >= self.options.prediction_log_flush_rows
        return full or time.monotonic() >= flush_at

    def _final_flush(self) -> None:
        try:
            self.flush()
        except (redis.RedisError, OSError) as exc:  # left pending: the next start writes it
            self._log.warning("prediction log not flushed at stop", error=str(exc))

    # --- Redis -----------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        ensure_group(self._redis, Stream.PREDICTIONS, PREDICTION_LOG_GROUP)

    def _recover(self) -> None:
        """Our own unacknowledged entries, page by page, then other consumers' idle ones."""
        cursor = "0"
        while entries := self._read_group(cursor):
            self._hold(entries)
            cursor = entries[-1][0]
        self._claim_idle()
        if self._held:
            self._log.info("unacknowledged predictions recovered", entries=len(self._held))

    def _claim_idle(self) -> None:
        """Entries another consumer read and left idle past ``min_idle_ms`` taken over."""
        held = {entry_id for entry_id, _ in self._held}
        start = "0-0"
        while True:
            response = cast(
                list[Any],
                self._redis.xautoclaim(
                    Stream.PREDICTIONS,
                    PREDICTION_LOG_GROUP,
                    self.consumer,
                    self.options.min_idle_ms,
                    start_id=start,
                    count=READ_COUNT,
                ),
            )
            claimed = [(text(i), fields or {}) for i, fields in response[1]]
            self._hold([entry for entry in claimed if entry[0] not in held])
            start = text(response[0])
            if start == "0-0":
                return

    def _read(self, start: str, *, block_ms: int | None) -> None:
        """New entries (``start`` ``>``) added to those held."""
        self._hold(self._read_group(start, block_ms))

    def _read_group(
        self, start: str, block_ms: int | None = None
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        """``XREADGROUP`` from ``start`` (``>``: new entries; an id: our pending after it)."""
        response = cast(
            list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None,
            self._redis.xreadgroup(
                PREDICTION_LOG_GROUP,
                self.consumer,
                {Stream.PREDICTIONS: start},
                count=READ_COUNT,
                block=block_ms,
            ),
        )
        return [(text(i), fields or {}) for _s, entries in response or [] for i, fields in entries]

    def _hold(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        for entry_id, fields in entries:
            try:
                record = decode_record(fields[RECORD_FIELD.encode()])
            except (KeyError, ValueError) as exc:
                self._log.warning(
                    "not a prediction record; dropped", entry=entry_id, error=str(exc)
                )
                self._invalid.append(entry_id)
                continue
            self._held.append((entry_id, record))
            self._held_rows += len(record.predictions)

    # --- files -----------------------------------------------------------------------------

    def flush(self) -> None:
        """The held entries written (one file per day), then acknowledged."""
        if self._held:
            written = write_parts(self.root, table_of(self._held))
            self.stats["files"] += len(written)
        ids = [entry_id for entry_id, _ in self._held] + self._invalid
        if ids:
            # Acknowledged and deleted together: the stream then holds only the backlog
            # (the cap bounds entries, not bytes, and a 1,000-row entry is ~100 KB).
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(Stream.PREDICTIONS, PREDICTION_LOG_GROUP, *ids)
                pipe.xdel(Stream.PREDICTIONS, *ids)
                pipe.execute()
        if self._held:
            self._log.info("predictions logged", entries=len(self._held), rows=self._held_rows)
        self.stats["entries"] += len(self._held)
        self.stats["rows"] += self._held_rows
        self.stats["invalid"] += len(self._invalid)
        self._held, self._held_rows, self._invalid = [], 0, []

    def housekeeping(self) -> None:
        """Past days compacted; the retention and size limits applied."""
        today = datetime.now(UTC).date()
        merged = compact(self.root, today=today)
        removed = enforce_limits(
            self.root,
            retention_days=self.options.prediction_log_retention_days,
            max_bytes=self.options.prediction_log_max_bytes,
            today=today,
        )
        if merged or removed.files:
            self._log.info(
                "prediction log housekept",
                days_compacted=merged,
                files_removed=removed.files,
                bytes_removed=removed.bytes,
            )
