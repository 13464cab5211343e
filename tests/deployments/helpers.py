"""Models to deploy, made with onnx.helper: no training, no torch. A linear classifier
(4 inputs, 3 classes) whose weights come from a seed, so that two seeds are two versions
with different bytes; `padding_floats` adds an unused initializer to reach a given size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

INPUTS, CLASSES = 4, 3


def linear_classifier(path: Path, seed: int, padding_floats: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(size=(INPUTS, CLASSES)).astype(np.float32), "w")
    initializers = [weights]
    if padding_floats:
        padding = rng.normal(size=(padding_floats,)).astype(np.float32)
        initializers.append(numpy_helper.from_array(padding, "padding"))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["logits"])],
        f"linear-{seed}",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, INPUTS])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [None, CLASSES])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
