"""Inference speed: the sklearn model against the served ONNX export.

Trains the production model (``TrainConfig``) on the real fleet, exports it exactly as
training does, and times one row and 1,000 rows through each runtime. Prints medians
over repeated runs (this machine is small and noisy; medians resist that).

    uv run python benchmarks/inference.py [--data-dir ../shared/data] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor

from vroom_features.contract import INPUT_NAME, OUTPUT_NAME
from vroom_pipelines.evaluate import training_set
from vroom_pipelines.train import TrainConfig, export_onnx
from vroom_predictor.loading import open_session

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``call`` in milliseconds, after a few warm-up calls."""
    for _ in range(5):
        call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA.resolve())
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    x, y = training_set(args.data_dir)
    search = TrainConfig().estimator().fit(x, y)
    model: ExtraTreesRegressor = search.best_estimator_
    proto, diff = export_onnx(model, x)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(proto.SerializeToString())
        session = open_session(path)  # the predictor's own session settings

    x32 = x.astype(np.float32)
    rows = {"1 row": x32.iloc[:1], "1,000 rows": x32.iloc[:1000]}
    print(
        f"model: ExtraTrees, {model.n_estimators} trees, min_samples_leaf="
        f"{model.min_samples_leaf}; ONNX max |diff| vs sklearn {diff:.1e}"
    )
    print(f"{'input':<12}{'sklearn (n_jobs=1)':>20}{'ONNX Runtime (1 thread)':>26}{'speed-up':>10}")
    for label, frame in rows.items():
        array = frame.to_numpy()
        sk = median_ms(lambda frame=frame: model.predict(frame), args.repeats)
        ort_ms = median_ms(
            lambda array=array: session.run([OUTPUT_NAME], {INPUT_NAME: array}), args.repeats
        )
        print(f"{label:<12}{sk:>17.3f} ms{ort_ms:>23.4f} ms{sk / ort_ms:>9.0f}x")


if __name__ == "__main__":
    main()
