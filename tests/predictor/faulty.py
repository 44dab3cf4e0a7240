"""Tiny ONNX models, built with ``onnx.helper``, that load but predict what is not a count.

Each keeps the tensor contract (``features`` ``[N, N_FEATURES]`` FP32 in, ``predicted_reservations``
``[N]`` FP32 out) and answers 0 for the load-time probe row (so the load check accepts
it) but a fault for any row whose ``description`` (column 3) is not the probe's:

- ``nan``: ``sqrt(-(description - probe)^2)``, NaN;
- ``negative``: ``-(description - probe)^2``, below zero.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vroom_features.contract import INPUT_NAME, N_FEATURES, ONNX_FILE, OUTPUT_NAME
from vroom_predictor.loading import PROBE_ROW

Fault = Literal["nan", "negative"]

DESCRIPTION_COLUMN = 3
PROBE_DESCRIPTION = float(PROBE_ROW[0, DESCRIPTION_COLUMN])


def faulty_onnx(fault: Fault) -> onnx.ModelProto:
    """The model proto (opset 17)."""
    nodes = [
        helper.make_node("Gather", [INPUT_NAME, "column"], ["description"], axis=1),
        helper.make_node("Sub", ["description", "probe"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["square"]),
        helper.make_node("Neg", ["square"], ["negative"]),
    ]
    last = "negative"
    if fault == "nan":
        nodes.append(helper.make_node("Sqrt", ["negative"], ["nan"]))
        last = "nan"
    nodes.append(helper.make_node("Reshape", [last, "flat"], [OUTPUT_NAME]))
    graph = helper.make_graph(
        nodes,
        f"faulty_{fault}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"])],
        initializer=[
            numpy_helper.from_array(np.array([DESCRIPTION_COLUMN], dtype=np.int64), "column"),
            numpy_helper.from_array(np.array(PROBE_DESCRIPTION, dtype=np.float32), "probe"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def faulty_model_dir(dst: Path, fault: Fault, template: Path | None = None) -> Path:
    """A model directory (a copy of ``template``, if given) whose ``model.onnx`` is the
    faulty model."""
    if template is not None:
        shutil.copytree(template, dst)
    else:
        dst.mkdir(parents=True)
    onnx.save(faulty_onnx(fault), str(dst / ONNX_FILE))
    return dst
