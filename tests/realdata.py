"""Where the real data set is: next to the repository (``../shared/data``), never inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_DATA_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()

#: Marks a test that reads the real data set; it skips, saying where it looked, without it.
needs_real_data = pytest.mark.skipif(
    not (REAL_DATA_DIR / "vehicles.csv").is_file(),
    reason=f"real data set not found at {REAL_DATA_DIR}",
)
