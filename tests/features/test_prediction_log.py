"""The prediction log's record and its Parquet files: encoding, partitions by day,
one row per key on read, compaction, and the retention and size limits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from vroom_features import FEATURE_NAMES
from vroom_features.prediction_files import (
    COMPACTED_PREFIX,
    SCHEMA,
    compact,
    enforce_limits,
    log_bytes,
    partition_dir,
    read_log,
    table_of,
    write_parts,
)
from vroom_features.prediction_log import (
    COLUMNS,
    RECORD_VERSION,
    LoggedPrediction,
    decode_record,
    encode_record,
)

TODAY = date(2026, 12, 7)


def _at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


def _record(rows: int = 2, served_at: float | None = None, **changes: object) -> bytes:
    features = np.arange(rows * len(FEATURE_NAMES), dtype=np.float32).reshape(rows, -1) / 7
    bounds = np.linspace(0, 1, rows * 4, dtype=np.float32).reshape(rows, 4)
    fields: dict[str, object] = {
        "request_id": "req-1",
        "served_at": served_at if served_at is not None else _at(TODAY),
        "route": "/predict/batch",
        "model_version": "3",
        "role": "champion",
        "latency_ms": 4.5,
        "features": features,
        "predictions": [1.5 + i for i in range(rows)],
        "interval_level": 0.8,
        "lower": bounds[:, 1],
        "upper": bounds[:, 1] + 2,
    }
    fields.update(changes)
    return encode_record(**fields)  # type: ignore[arg-type]


def test_a_record_round_trips_from_the_gateway_arrays() -> None:
    record = decode_record(_record(rows=3, vehicle_ids=[7, 8, 9]))
    assert record.schema_version == RECORD_VERSION
    assert record.vehicle_ids == [7, 8, 9]
    assert len(record.features) == 3
    assert record.features[1][2] == pytest.approx(float(np.float32((len(FEATURE_NAMES) + 2) / 7)))
    assert record.upper is not None
    assert record.lower is not None
    assert record.upper[2] - record.lower[2] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"predictions": [1.0]}, "features"),
        ({"vehicle_ids": [1]}, "vehicle_ids"),
        ({"lower": None}, "interval_level, lower and upper"),
        ({"role": "mirror"}, "role"),
        ({"latency_ms": -1.0}, "latency_ms"),
    ],
)
def test_an_inconsistent_record_is_refused_by_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        decode_record(_record(**changes))


def test_a_newer_record_is_refused() -> None:
    raw = _record().replace(b'"schema_version":1', b'"schema_version":99')
    with pytest.raises(ValueError, match="schema_version 99 is newer"):
        decode_record(raw)


def test_the_parquet_schema_has_the_logged_columns() -> None:
    assert tuple(SCHEMA.names) == COLUMNS
    assert set(FEATURE_NAMES) < set(COLUMNS)


def _entries(*pairs: tuple[str, bytes]) -> list[tuple[str, LoggedPrediction]]:
    return [(log_id, decode_record(raw)) for log_id, raw in pairs]


def test_rows_go_to_the_day_they_were_served_and_read_back_once(tmp_path: Path) -> None:
    yesterday = TODAY - timedelta(days=1)
    entries = _entries(
        ("1-0", _record(rows=2, served_at=_at(yesterday, 23))),
        (
            "2-0",
            _record(
                rows=1,
                served_at=_at(TODAY, 0),
                vehicle_ids=[42],
                interval_level=None,
                lower=None,
                upper=None,
            ),
        ),
    )
    written = write_parts(tmp_path, table_of(entries))
    assert sorted(p.parent.name for p in written) == [f"date={yesterday}", f"date={TODAY}"]
    assert pq.read_table(written[0]).num_rows + pq.read_table(written[1]).num_rows == 3

    # A redelivered entry (a crash before the ack) is written again: read once.
    write_parts(tmp_path, table_of(entries[:1]))
    frame = read_log(tmp_path)
    assert list(frame.columns) == list(COLUMNS)
    assert list(zip(frame["log_id"], frame["row"], strict=True)) == [
        ("1-0", 0),
        ("1-0", 1),
        ("2-0", 0),
    ]
    assert frame["vehicle_id"].isna().tolist() == [True, True, False]
    assert frame["vehicle_id"].iloc[2] == 42
    assert frame["predicted_reservations"].tolist() == [1.5, 2.5, 1.5]
    assert frame["interval_level"].isna().tolist() == [False, False, True]
    assert frame["served_at"].dt.tz is not None
    assert frame[FEATURE_NAMES[0]].dtype == np.float32

    assert len(read_log(tmp_path, since=TODAY)) == 1
    assert read_log(tmp_path / "absent").columns.tolist() == list(COLUMNS)


def test_compaction_merges_past_days_and_keeps_every_row(tmp_path: Path) -> None:
    yesterday = TODAY - timedelta(days=1)
    for n in range(3):
        write_parts(tmp_path, table_of(_entries((f"{n}-0", _record(served_at=_at(yesterday))))))
        write_parts(tmp_path, table_of(_entries((f"{n}-1", _record(served_at=_at(TODAY))))))
    write_parts(
        tmp_path, table_of(_entries(("0-0", _record(served_at=_at(yesterday)))))
    )  # a repeat
    before = read_log(tmp_path)

    assert compact(tmp_path, today=TODAY) == 1
    past = list(partition_dir(tmp_path, yesterday).glob("*.parquet"))
    assert [p.name.startswith(COMPACTED_PREFIX) for p in past] == [True]
    assert pq.read_table(past[0]).num_rows == 6  # the repeat dropped
    assert len(list(partition_dir(tmp_path, TODAY).glob("*.parquet"))) == 3  # today: untouched
    assert read_log(tmp_path).equals(before)
    assert compact(tmp_path, today=TODAY) == 0


def test_old_days_and_bytes_over_the_budget_are_removed_oldest_first(tmp_path: Path) -> None:
    days = [TODAY - timedelta(days=n) for n in (40, 3, 2, 1, 0)]
    for n, day in enumerate(days):
        write_parts(tmp_path, table_of(_entries((f"{n}-0", _record(rows=50, served_at=_at(day))))))
    stale = tmp_path / f"date={TODAY}" / ".part-x.parquet.tmp"  # a crash mid-write
    stale.write_bytes(b"half a file")
    one_file = log_bytes(tmp_path) // len(days)

    removed = enforce_limits(tmp_path, retention_days=30, max_bytes=10**9, today=TODAY)
    assert removed.files == 2  # the 40-day-old file and the temporary
    assert not partition_dir(tmp_path, days[0]).exists()
    assert not stale.exists()

    budget = log_bytes(tmp_path) - one_file  # one file too many: the oldest goes
    removed = enforce_limits(tmp_path, retention_days=30, max_bytes=budget, today=TODAY)
    assert removed.files == 1
    assert removed.bytes > 0
    assert sorted(read_log(tmp_path)["served_at"].dt.date.unique()) == days[2:]
    assert log_bytes(tmp_path) <= budget


def test_a_file_written_is_whole_or_absent(tmp_path: Path) -> None:
    (written,) = write_parts(tmp_path, table_of(_entries(("1-0", _record()))))
    assert written.exists()
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary left
    assert written.stat().st_size > 0
