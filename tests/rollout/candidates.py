"""Candidate models of several kinds, derived from a real trained model, for rollout tests.

Each function copies an MLflow model directory (``src``) to ``dst`` and rewrites its
``model.onnx`` by graph surgery: the original graph is kept, its output tensor is renamed
to an internal name, and a few nodes computing the contract's output from it are
appended. The graph's input and output (names, dtypes, shapes) are the original's, so the
predictor sees the same tensor contract and only the answers (or the latency) change.

Only ``model.onnx`` is rewritten: the sklearn flavour (``model.pkl``) and the ``MLmodel``
file are the source's. The registration file is never copied (each test registers its
copies itself).

Kinds:

- :func:`same`: a byte-identical copy (a good candidate);
- :func:`constant`: answers one value for every row;
- :func:`failing`: loads (its probe prediction is sane) but answers NaN for every row
  whose ``description`` differs from the probe's (120): **every request of a test that
  wants it to fail must use ``description != 120``**;
- :func:`slow`: the original predictions, bit for bit, plus an expensive branch calibrated
  on this machine to add about ``extra_ms`` to every inference call;
- :func:`unloadable`: ``model.onnx`` is not an ONNX model at all.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, helper, numpy_helper

from vroom_features.contract import INPUT_NAME, ONNX_FILE, OUTPUT_NAME, REGISTRATION_FILE
from vroom_predictor.loading import PROBE_ROW, open_session

#: Prefix of every tensor and node the surgery adds.
PREFIX = "candidate_"
#: The probe's ``description`` (column 3): the only value :func:`failing` answers for.
PROBE_DESCRIPTION = float(PROBE_ROW[0, 3])
DESCRIPTION_COLUMN = 3

#: Bytes of an "unloadable" model: not a parseable ONNX protobuf.
NOT_ONNX = b"this is not an ONNX model (tests.rollout.candidates.unloadable)\n"

#: The slow branch: ``SLOW_ROWS`` x ``SLOW_WIDTH`` activations multiplied, layer after
#: layer, by one shared ``SLOW_WIDTH`` x ``SLOW_WIDTH`` matrix (1 MiB in the file).
SLOW_WIDTH = 512
SLOW_ROWS = 16
#: Layers of the first calibration build; doubled until it costs ``MIN_PROBE_MS``.
PROBE_LAYERS = 16
MIN_PROBE_MS = 4.0
MAX_LAYERS = 20_000
#: Timed calls per calibration measurement. Their lower quartile is kept: close to the
#: typical (median) cost, yet not inflated by a burst of load during a few of the calls.
CALIBRATION_CALLS = 16
#: A final build further than this from the target (relative) is rebuilt once.
CALIBRATION_TOLERANCE = 0.15

Build = Callable[[str], tuple[list[NodeProto], list[TensorProto]]]


def same(src: Path, dst: Path) -> Path:
    """An identical copy of the model directory (minus its registration file)."""
    _copy_dir(src, dst)
    return dst


def constant(src: Path, dst: Path, value: float = 50.0) -> Path:
    """A model answering ``value`` for every row (same output shape as the original)."""
    _copy_dir(src, dst)

    def build(original: str) -> tuple[list[NodeProto], list[TensorProto]]:
        shape, fill = _name("shape"), _name("value")
        nodes = [
            helper.make_node("Shape", [original], [shape], name=_name("shape_node")),
            helper.make_node("Expand", [fill, shape], [OUTPUT_NAME], name=_name("expand_node")),
        ]
        return nodes, [_scalar(fill, value)]

    _rewrite(dst, build)
    return dst


def failing(src: Path, dst: Path) -> Path:
    """A model that loads but answers NaN for rows whose ``description`` is not 120.

    The output is ``original + sqrt(-(description - 120)^2)``: exactly the original
    prediction for the probe row (so ``load_dir``'s check passes) and NaN for any other
    description, which the predictor rejects at inference time. Requests that must fail
    have to use ``description != 120``.
    """
    _copy_dir(src, dst)

    def build(original: str) -> tuple[list[NodeProto], list[TensorProto]]:
        column, probe = _name("description_column"), _name("probe_description")
        names = {
            k: _name(k)
            for k in ("description", "diff", "square", "negated", "nan_or_zero", "shape", "term")
        }
        nodes = [
            # Gather with a 1-element index keeps the column axis: [N, 1].
            helper.make_node(
                "Gather", [INPUT_NAME, column], [names["description"]], axis=1, name=_name("n0")
            ),
            helper.make_node(
                "Sub", [names["description"], probe], [names["diff"]], name=_name("n1")
            ),
            helper.make_node(
                "Mul", [names["diff"], names["diff"]], [names["square"]], name=_name("n2")
            ),
            helper.make_node("Neg", [names["square"]], [names["negated"]], name=_name("n3")),
            helper.make_node("Sqrt", [names["negated"]], [names["nan_or_zero"]], name=_name("n4")),
            helper.make_node("Shape", [original], [names["shape"]], name=_name("n5")),
            helper.make_node(
                "Reshape", [names["nan_or_zero"], names["shape"]], [names["term"]], name=_name("n6")
            ),
            helper.make_node("Add", [original, names["term"]], [OUTPUT_NAME], name=_name("n7")),
        ]
        initializers = [
            numpy_helper.from_array(np.array([DESCRIPTION_COLUMN], dtype=np.int64), column),
            _scalar(probe, PROBE_DESCRIPTION),
        ]
        return nodes, initializers

    _rewrite(dst, build)
    return dst


def slow(src: Path, dst: Path, extra_ms: float = 40.0) -> Path:
    """The original predictions, bit for bit, about ``extra_ms`` slower per inference call.

    An input-dependent branch (so ONNX Runtime cannot fold it away at load time) runs
    ``L`` layers of ``h = tanh(h @ W)`` on a ``[16, 512]`` activation seeded by the mean
    of ``tanh(features)``, with one shared ``[512, 512]`` matrix ``W``; its mean (finite:
    every layer ends in a tanh) times zero is added to the original output. The cost does
    not depend on the number of rows.

    ``L`` is calibrated now, on this machine, through the predictor's own session settings
    (:func:`vroom_predictor.loading.open_session`, one intra-op thread): a build with a few
    layers (doubled until it costs a few ms) is timed against the original on one row
    (lower quartile of repeated calls) to get the cost of a layer; the final build is
    timed again and rebuilt once with a corrected ``L`` if it is more than 15% off
    ``extra_ms``. Building takes about 1-2 s plus a few dozen calls of the result.
    """
    if extra_ms <= 0:
        raise ValueError(f"extra_ms must be positive (got {extra_ms})")
    _copy_dir(src, dst)
    onnx_path = dst / ONNX_FILE
    original_bytes = onnx_path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        original_path = Path(tmp) / ONNX_FILE
        original_path.write_bytes(original_bytes)
        base_ms = single_row_ms(original_path)

        layers = PROBE_LAYERS
        while True:
            cost_ms = _build_slow(original_bytes, onnx_path, layers) - base_ms
            if cost_ms >= MIN_PROBE_MS or layers >= MAX_LAYERS:
                break
            layers = min(layers * 2, MAX_LAYERS)
        for _ in range(2):
            per_layer_ms = max(cost_ms, 1e-3) / layers
            wanted = int(np.clip(round(extra_ms / per_layer_ms), 1, MAX_LAYERS))
            if wanted != layers:
                layers = wanted
                cost_ms = _build_slow(original_bytes, onnx_path, layers) - base_ms
            if abs(cost_ms - extra_ms) <= CALIBRATION_TOLERANCE * extra_ms:
                break
    return dst


def unloadable(src: Path, dst: Path) -> Path:
    """A model directory whose ``model.onnx`` is not an ONNX model (loading it fails)."""
    _copy_dir(src, dst)
    (dst / ONNX_FILE).write_bytes(NOT_ONNX)
    return dst


def single_row_ms(onnx_path: Path, calls: int = CALIBRATION_CALLS) -> float:
    """Lower quartile of ``calls`` one-row inferences of ``onnx_path``, in milliseconds, through a
    session opened as the predictor opens its own (after two warm-up calls)."""
    session = open_session(onnx_path)
    feed = {INPUT_NAME: PROBE_ROW}
    for _ in range(2):
        session.run([OUTPUT_NAME], feed)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.quantiles(samples, n=4)[0]


def slow_layers(model_dir: Path) -> int:
    """How many layers the slow branch of a :func:`slow` candidate has (0: not one)."""
    model = onnx.load(str(model_dir / ONNX_FILE))
    return sum(1 for n in model.graph.node if n.name.startswith(_name("layer_matmul_")))


# --- internals -------------------------------------------------------------------------


def _build_slow(original_bytes: bytes, onnx_path: Path, layers: int) -> float:
    """Write the slow model with ``layers`` layers to ``onnx_path``; its one-row time."""
    onnx_path.write_bytes(original_bytes)

    def build(original: str) -> tuple[list[NodeProto], list[TensorProto]]:
        rng = np.random.default_rng(0)
        weights = (rng.standard_normal((SLOW_WIDTH, SLOW_WIDTH)) / np.sqrt(SLOW_WIDTH)).astype(
            np.float32
        )
        w, rows = _name("weights"), _name("seed_rows")
        squashed, seed, start, hidden = (
            _name("squashed_features"),
            _name("seed"),
            _name("start"),
            _name("hidden_0"),
        )
        nodes = [
            # Depend on the input, or ONNX Runtime would constant-fold the whole branch.
            helper.make_node("Tanh", [INPUT_NAME], [squashed], name=_name("squash")),
            helper.make_node("ReduceMean", [squashed], [seed], keepdims=0, name=_name("seed_mean")),
            helper.make_node("Gather", [w, rows], [_name("rows")], axis=0, name=_name("rows_node")),
            helper.make_node("Add", [_name("rows"), seed], [start], name=_name("start_add")),
            helper.make_node("Tanh", [start], [hidden], name=_name("start_tanh")),
        ]
        for i in range(layers):
            product, nxt = _name(f"product_{i}"), _name(f"hidden_{i + 1}")
            nodes += [
                helper.make_node("MatMul", [hidden, w], [product], name=_name(f"layer_matmul_{i}")),
                helper.make_node("Tanh", [product], [nxt], name=_name(f"layer_tanh_{i}")),
            ]
            hidden = nxt
        mean, zero, nothing = _name("heavy_mean"), _name("zero"), _name("nothing")
        nodes += [
            helper.make_node("ReduceMean", [hidden], [mean], keepdims=0, name=_name("heavy_red")),
            helper.make_node("Mul", [mean, zero], [nothing], name=_name("times_zero")),
            # A scalar added to the original: its shape, and (x + 0 == x) its values.
            helper.make_node("Add", [original, nothing], [OUTPUT_NAME], name=_name("add_zero")),
        ]
        initializers = [
            numpy_helper.from_array(weights, w),
            numpy_helper.from_array(np.arange(SLOW_ROWS, dtype=np.int64), rows),
            _scalar(zero, 0.0),
        ]
        return nodes, initializers

    _rewrite(onnx_path.parent, build)
    return single_row_ms(onnx_path)


def _copy_dir(src: Path, dst: Path) -> None:
    if not (src / ONNX_FILE).is_file():
        raise FileNotFoundError(f"{src} has no {ONNX_FILE}")
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} exists and is not empty")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    (dst / REGISTRATION_FILE).unlink(missing_ok=True)


def _rewrite(model_dir: Path, build: Build) -> None:
    """Rename the graph's output tensor, append ``build``'s nodes computing the contract's
    output from it, check the model and save it in place."""
    path = model_dir / ONNX_FILE
    model = onnx.load(str(path))
    graph = model.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or OUTPUT_NAME not in {
        o.name for o in graph.output
    }:
        raise ValueError(f"{path} does not have the {INPUT_NAME!r} -> {OUTPUT_NAME!r} contract")
    original = _name("original_output")
    for node in graph.node:
        node.input[:] = [original if n == OUTPUT_NAME else n for n in node.input]
        node.output[:] = [original if n == OUTPUT_NAME else n for n in node.output]
    for info in graph.value_info:
        if info.name == OUTPUT_NAME:
            info.name = original
    nodes, initializers = build(original)
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    if not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", 13))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _name(suffix: str) -> str:
    return f"{PREFIX}{suffix}"


def _scalar(name: str, value: float) -> TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)
