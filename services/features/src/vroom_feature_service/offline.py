"""The Parquet offline store, held in memory and reloaded when its file changes.

Batch materialization replaces the file atomically (write to a temporary file, then
rename), so a reader sees either the old file or the new one. :class:`OfflineStore`
keeps the parsed rows of the last file it read and looks at the file's identity
(inode, size, modification time) at most once per ``check_interval_s``: requests
between two checks cost no system call, and a rewrite is served at most one interval
later. A missing file is an unavailable, empty store, not an error; a file that
cannot be parsed keeps the last good rows and reports the error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd
import structlog

from vroom_common.errors import NotFound
from vroom_features import ENTITY_KEY, FEATURES, LABEL, TIMESTAMP_FIELD
from vroom_features.schemas import OfflineFeatureRow, OfflineFeatures, OfflineStoreInfo

log = structlog.get_logger(__name__)

#: Default seconds between two looks at the file.
DEFAULT_CHECK_INTERVAL_S: Final = 1.0

#: Columns a valid offline store has.
REQUIRED_COLUMNS: Final = (ENTITY_KEY, *(f.name for f in FEATURES), LABEL, TIMESTAMP_FIELD)

#: What identifies one version of the file: (inode, size, mtime in ns).
_FileId = tuple[int, int, int]


@dataclass(frozen=True)
class OfflineSnapshot:
    """One loaded version of the offline store (immutable: readers share it freely)."""

    path: Path
    rows: tuple[OfflineFeatureRow, ...] = ()
    by_id: Mapping[int, OfflineFeatureRow] = field(default_factory=dict)
    size_bytes: int | None = None
    last_modified: datetime | None = None
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.last_modified is not None

    def features(self) -> OfflineFeatures:
        return OfflineFeatures(
            available=self.available,
            path=str(self.path),
            last_modified=self.last_modified,
            rows=list(self.rows),
        )

    def row(self, vehicle_id: int) -> OfflineFeatureRow:
        """The vehicle's row; :class:`NotFound` (saying why) when the store lacks it."""
        if not self.available:
            raise NotFound(f"vehicle {vehicle_id}: the offline store has no file at {self.path}")
        found = self.by_id.get(vehicle_id)
        if found is None:
            raise NotFound(f"vehicle {vehicle_id} is not in the offline store")
        return found

    def info(self) -> OfflineStoreInfo:
        return OfflineStoreInfo(
            available=self.available,
            path=str(self.path),
            size_bytes=self.size_bytes,
            last_modified=self.last_modified.timestamp() if self.last_modified else None,
            rows=len(self.rows),
            error=self.error,
        )


def read_rows(path: Path) -> tuple[OfflineFeatureRow, ...]:
    """Parse the Parquet file into rows; ``ValueError`` when a required column is missing."""
    frame = pd.read_parquet(path)
    absent = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if absent:
        raise ValueError(f"columns {absent} are missing")
    labels = frame[LABEL].astype("Int64")
    times = pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True)
    kinds: dict[str, Callable[[Any], int | float]] = {
        f.name: int if f.kind == "int" else float for f in FEATURES
    }
    records = frame[[ENTITY_KEY, *kinds]].to_dict("records")
    return tuple(
        OfflineFeatureRow.model_validate(
            {name: cast(record[name]) for name, cast in kinds.items()}
            | {
                ENTITY_KEY: int(record[ENTITY_KEY]),
                LABEL: None if pd.isna(label) else int(label),
                TIMESTAMP_FIELD: timestamp.to_pydatetime(),
            }
        )
        for record, label, timestamp in zip(records, labels, times, strict=True)
    )


class OfflineStore:
    """The offline store file and the snapshot of it last read.

    Args:
        path: The Parquet file batch materialization writes.
        check_interval_s: Least time between two looks at the file.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        path: Path,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = OfflineSnapshot(path)
        self._file_id: _FileId | None = None
        self._checked_at: float | None = None

    def snapshot(self) -> OfflineSnapshot:
        """The current rows, reloading first when the file changed since the last check."""
        now = self._clock()
        checked = self._checked_at
        if checked is not None and now - checked < self.check_interval_s:
            return self._snapshot
        with self._lock:  # one reload at a time; the others wait and get its result
            if self._checked_at == checked:
                self._refresh()
                self._checked_at = self._clock()
            return self._snapshot

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self._file_id is not None or self._snapshot.error is None:
                log.warning("offline store file missing", path=str(self.path))
            self._file_id = None
            self._snapshot = OfflineSnapshot(self.path, error="file not found")
            return
        file_id = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if file_id == self._file_id:
            return
        self._file_id = file_id  # a bad file is not read again until it changes
        try:
            rows = read_rows(self.path)
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            log.error("offline store unreadable", path=str(self.path), error=str(exc))
            self._snapshot = OfflineSnapshot(
                self.path,
                self._snapshot.rows,
                self._snapshot.by_id,
                self._snapshot.size_bytes,
                self._snapshot.last_modified,
                error=f"cannot read {self.path.name}: {exc}",
            )
            return
        self._snapshot = OfflineSnapshot(
            self.path,
            rows,
            {row.vehicle_id: row for row in rows},
            stat.st_size,
            datetime.fromtimestamp(stat.st_mtime, UTC),
        )
        log.info("offline store loaded", path=str(self.path), rows=len(rows))
