"""The drained prediction log on disk: date-partitioned Parquet beside the offline store.

Layout: ``<prediction_log_path>/date=YYYY-MM-DD/<name>.parquet``, the date being the
UTC day a prediction was served (Hive-style, so pyarrow, DuckDB or Spark read the
directory as one table with a ``date`` column). Each drain writes one ``part-`` file
per day it saw; :func:`compact` later merges a past day's parts into one file.

Every file is written to a temporary name, fsynced and renamed, so a reader never sees
half a file and a crash leaves either the whole file or none. Rows may repeat (an entry
redelivered after a crash, a compaction interrupted before it removed its inputs):
:func:`read_log` keeps one row per ``ROW_KEY``.

Bounded by :func:`enforce_limits`: days older than the retention go first, then the
oldest files until the directory fits its byte budget.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vroom_features.prediction_log import COLUMNS, ROW_KEY, LoggedPrediction
from vroom_features.transforms import ENTITY_KEY, FEATURE_NAMES

#: A day's directory: ``date=YYYY-MM-DD``.
PARTITION_RE: Final = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
#: Files a drain writes, and the one a compaction leaves.
PART_PREFIX: Final = "part-"
COMPACTED_PREFIX: Final = "compacted-"

#: The Parquet schema of ``COLUMNS``: one place for every column's type.
SCHEMA: Final = pa.schema(
    [
        ("log_id", pa.string()),
        ("row", pa.int32()),
        ("request_id", pa.string()),
        ("served_at", pa.timestamp("us", tz="UTC")),
        ("route", pa.string()),
        ("model_version", pa.string()),
        ("role", pa.string()),
        ("latency_ms", pa.float64()),
        (ENTITY_KEY, pa.int64()),
        *((name, pa.float32()) for name in FEATURE_NAMES),
        ("predicted_reservations", pa.float64()),
        ("interval_lower", pa.float64()),
        ("interval_upper", pa.float64()),
        ("interval_level", pa.float64()),
    ]
)


def table_of(entries: Sequence[tuple[str, LoggedPrediction]]) -> pa.Table:
    """The rows of ``(stream entry id, record)`` pairs: one per predicted vehicle."""
    columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
    for log_id, record in entries:
        rows = len(record.predictions)
        served_at = datetime.fromtimestamp(record.served_at, UTC)
        for name, value in (
            ("log_id", log_id),
            ("request_id", record.request_id),
            ("served_at", served_at),
            ("route", record.route),
            ("model_version", record.model_version),
            ("role", record.role),
            ("latency_ms", record.latency_ms),
            ("interval_level", record.interval_level),
        ):
            columns[name].extend([value] * rows)
        columns["row"].extend(range(rows))
        columns[ENTITY_KEY].extend(record.vehicle_ids or [None] * rows)
        for index, name in enumerate(FEATURE_NAMES):
            columns[name].extend(row[index] for row in record.features)
        columns["predicted_reservations"].extend(record.predictions)
        columns["interval_lower"].extend(record.lower or [None] * rows)
        columns["interval_upper"].extend(record.upper or [None] * rows)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def partition_dir(root: Path, day: date) -> Path:
    return root / f"date={day.isoformat()}"


def _partitions(root: Path) -> list[tuple[date, Path]]:
    """The day directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    days = []
    for child in root.iterdir():
        match = PARTITION_RE.match(child.name)
        if match and child.is_dir():
            days.append((date.fromisoformat(match.group(1)), child))
    return sorted(days)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.parquet"))


def _write_atomically(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """The rename (or removal) made durable, not only the file's bytes."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_parts(root: Path, table: pa.Table) -> list[Path]:
    """``table`` written as one new ``part-`` file per UTC day it covers."""
    if table.num_rows == 0:
        return []
    days = pd.Series(table.column("served_at").to_pandas()).dt.date.to_numpy()
    written = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for day in sorted(set(days)):
        rows = table.filter(pa.array(days == day))
        path = partition_dir(root, day) / f"{PART_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        _write_atomically(rows, path)
        written.append(path)
    return written


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates(list(ROW_KEY), keep="first").reset_index(drop=True)


def read_log(root: Path, *, since: date | None = None) -> pd.DataFrame:
    """Every logged row under ``root`` (from day ``since`` on), once each, oldest first;
    an empty frame with ``COLUMNS`` when nothing is logged. Files that vanish while
    being read (retention, compaction) are skipped."""
    tables = []
    for day, directory in _partitions(root):
        if since is not None and day < since:
            continue
        for path in _files(directory):
            try:
                tables.append(pq.read_table(path, schema=SCHEMA))
            except FileNotFoundError:
                continue
    if not tables:
        empty: pd.DataFrame = SCHEMA.empty_table().to_pandas()
        return empty
    frame = _dedupe(pa.concat_tables(tables).to_pandas())
    ordered: pd.DataFrame = frame.sort_values(["served_at", "log_id", "row"], ignore_index=True)
    return ordered


def compact(root: Path, *, today: date) -> int:
    """Each day before ``today`` held in several files merged into one; the number of
    days merged. The merged file is in place before its inputs are removed."""
    merged = 0
    for day, directory in _partitions(root):
        if day >= today:
            continue
        files = _files(directory)
        if len(files) <= 1:
            continue
        frame = _dedupe(
            pa.concat_tables(pq.read_table(p, schema=SCHEMA) for p in files).to_pandas()
        )
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
        target = directory / f"{COMPACTED_PREFIX}{uuid.uuid4().hex[:8]}.parquet"
        _write_atomically(table, target)
        for path in files:
            path.unlink(missing_ok=True)
        _fsync_dir(directory)
        merged += 1
    return merged


@dataclass(frozen=True)
class Removed:
    """What :func:`enforce_limits` deleted."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.files + other.files, self.bytes + other.bytes)


def _remove(paths: Iterable[Path]) -> Removed:
    removed = Removed()
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        removed += Removed(1, size)
    return removed


def enforce_limits(root: Path, *, retention_days: int, max_bytes: int, today: date) -> Removed:
    """Days older than ``retention_days`` before ``today`` deleted, then the oldest files
    (by day, then name) until the log holds at most ``max_bytes``. Temporary files a
    crash left are removed too: the caller is the log's one writer, between writes."""
    removed = Removed()
    oldest_kept = today - timedelta(days=retention_days)
    kept: list[Path] = []
    for day, directory in _partitions(root):
        removed += _remove(directory.glob(".*.tmp"))
        if day < oldest_kept:
            removed += _remove(_files(directory))
        else:
            kept.extend(_files(directory))
    sizes = []
    for path in kept:
        try:
            sizes.append((path, path.stat().st_size))
        except FileNotFoundError:
            continue
    total = sum(size for _, size in sizes)
    over = []
    for path, size in sizes:  # oldest first
        if total <= max_bytes:
            break
        over.append(path)
        total -= size
    removed += _remove(over)
    for _, directory in _partitions(root):
        _remove_if_empty(directory)
    return removed


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or gone): kept
        directory.rmdir()


def log_bytes(root: Path) -> int:
    """Bytes of the log's Parquet files."""
    return sum(
        path.stat().st_size for _, directory in _partitions(root) for path in _files(directory)
    )
