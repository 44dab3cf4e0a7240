"""Inference speed: the sklearn model against the served ONNX export, and what the
prediction intervals add to the served graph.

Trains the production model (``TrainConfig`` + interval calibration) on the real fleet,
exports it exactly as training does, and times one row and 1,000 rows through sklearn,
an ONNX graph of the point model alone (fed its own columns), the served graph (point
and bounds, fed every feature: it picks its columns itself) and the same graph through
the predictor's loaded model. Prints medians over repeated runs (this machine is small and noisy;
medians resist that).

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
import onnx
import onnxruntime as ort

from vroom_features.contract import INPUT_NAME, OUTPUT_NAME
from vroom_pipelines.evaluate import training_set
from vroom_pipelines.train import TrainConfig, convert, export_onnx, fit_model
from vroom_predictor.loading import LoadedModel, open_session

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


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(proto.SerializeToString())
        return open_session(path)  # the predictor's own session settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA.resolve())
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    x, y = training_set(args.data_dir)
    model = fit_model(TrainConfig(), x, y.to_numpy())
    proto, diff = export_onnx(model, x)
    served = _session(proto)
    point_only = _session(convert(model.point, OUTPUT_NAME))
    loaded = LoadedModel("bench", None, "memory", served)

    x32 = x.astype(np.float32)
    rows = {"1 row": x32.iloc[:1], "1,000 rows": x32.iloc[:1000]}
    print(
        f"model: ExtraTrees on {', '.join(model.features)}, {model.point.n_estimators} trees, "
        f"min_samples_leaf={model.point.min_samples_leaf}, intervals from a "
        f"{model.scale.n_estimators}-tree scale model; ONNX max |diff| vs sklearn {diff:.1e}"
    )
    print(
        f"{'input':<12}{'sklearn (n_jobs=1)':>20}{'ONNX point only':>18}"
        f"{'ONNX served graph':>20}{'predictor':>14}"
    )
    for label, frame in rows.items():
        full = frame.to_numpy()
        array = frame[list(model.features)].to_numpy()
        sk = median_ms(lambda frame=frame: model.predict(frame), args.repeats)
        point_ms = median_ms(
            lambda array=array: point_only.run([OUTPUT_NAME], {INPUT_NAME: array}), args.repeats
        )
        served_ms = median_ms(lambda full=full: served.run(None, {INPUT_NAME: full}), args.repeats)
        loaded_ms = median_ms(lambda full=full: loaded.predict_with_intervals(full), args.repeats)
        print(
            f"{label:<12}{sk:>17.3f} ms{point_ms:>15.4f} ms{served_ms:>17.4f} ms"
            f"{loaded_ms:>11.4f} ms"
        )


if __name__ == "__main__":
    main()
