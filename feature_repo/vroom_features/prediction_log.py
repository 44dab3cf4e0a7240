"""The prediction log's record: what the gateway served, one entry per request.

The gateway appends one entry per sampled request to ``Stream.PREDICTIONS`` (a field
``record`` holding this model's JSON); the materializer drains the stream into
date-partitioned Parquet (:mod:`vroom_features.prediction_files`), one row per
predicted vehicle with the columns of ``COLUMNS``. The features are the model's inputs
(computed from raw attributes, or read from the online store), in ``FEATURE_NAMES``
order, at the float32 precision the model saw.
"""

from __future__ import annotations

from typing import Any, Final, Literal, Self

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vroom_features.transforms import ENTITY_KEY, FEATURE_NAMES

#: Version of the record below; bump on an incompatible change.
RECORD_VERSION: Final = 1
#: The stream entry's one field.
RECORD_FIELD: Final = "record"

#: Which arm of a rollout answered: the champion, the candidate, or the champion after
#: a failed candidate call.
Role = Literal["champion", "candidate", "fallback"]

#: The columns of the drained log, one row per predicted vehicle. ``log_id`` (the
#: stream entry) and ``row`` (the vehicle's place in its request) identify a row: a
#: redelivered entry writes the same rows again, and readers keep one of each.
COLUMNS: Final = (
    "log_id",
    "row",
    "request_id",
    "served_at",
    "route",
    "model_version",
    "role",
    "latency_ms",
    ENTITY_KEY,
    *FEATURE_NAMES,
    "predicted_reservations",
    "interval_lower",
    "interval_upper",
    "interval_level",
)
#: The columns that identify a logged row.
ROW_KEY: Final = ("log_id", "row")


class LoggedPrediction(BaseModel):
    """One served request: its inputs, its answer and who gave it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RECORD_VERSION
    request_id: str | None
    served_at: float = Field(description="Unix time (seconds) the answer was sent.")
    route: str
    model_version: str
    role: Role
    latency_ms: float = Field(ge=0, description="The gateway's time for the whole request.")
    vehicle_ids: list[int] | None = Field(
        default=None, description="The vehicles predicted by id; None for raw attributes."
    )
    features: list[list[float]]
    predictions: list[float]
    interval_level: float | None = None
    lower: list[float] | None = None
    upper: list[float] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        rows = len(self.predictions)
        if len(self.features) != rows:
            raise ValueError(f"features: {len(self.features)} rows for {rows} predictions")
        if any(len(row) != len(FEATURE_NAMES) for row in self.features):
            raise ValueError(f"features: every row must hold {len(FEATURE_NAMES)} values")
        for name in ("vehicle_ids", "lower", "upper"):
            values = getattr(self, name)
            if values is not None and len(values) != rows:
                raise ValueError(f"{name}: {len(values)} values for {rows} predictions")
        if (self.lower is None) != (self.interval_level is None) or (self.lower is None) != (
            self.upper is None
        ):
            raise ValueError("interval_level, lower and upper are given together or not at all")
        return self


def encode_record(
    *,
    request_id: str | None,
    served_at: float,
    route: str,
    model_version: str,
    role: Role,
    latency_ms: float,
    features: npt.NDArray[np.float32],
    predictions: list[float],
    vehicle_ids: list[int] | None = None,
    interval_level: float | None = None,
    lower: npt.NDArray[np.float32] | None = None,
    upper: npt.NDArray[np.float32] | None = None,
) -> bytes:
    """A :class:`LoggedPrediction`'s JSON, built straight from the gateway's arrays
    (orjson serializes numpy without a Python float per value)."""
    record: dict[str, Any] = {
        "schema_version": RECORD_VERSION,
        "request_id": request_id,
        "served_at": served_at,
        "route": route,
        "model_version": model_version,
        "role": role,
        "latency_ms": latency_ms,
        "vehicle_ids": vehicle_ids,
        "features": np.ascontiguousarray(features),
        "predictions": predictions,
        "interval_level": interval_level,
        # A level's column of the bounds is a strided view; orjson takes C order only.
        "lower": None if lower is None else np.ascontiguousarray(lower),
        "upper": None if upper is None else np.ascontiguousarray(upper),
    }
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_record(raw: bytes | str) -> LoggedPrediction:
    """The record of a stream entry; ``ValueError`` (pydantic's ``ValidationError`` is
    one) when it is not one, a newer ``schema_version`` included."""
    record = LoggedPrediction.model_validate_json(raw)
    if record.schema_version > RECORD_VERSION:
        raise ValueError(f"schema_version {record.schema_version} is newer than {RECORD_VERSION}")
    return record
