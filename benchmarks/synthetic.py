"""Synthetic ONNX models of a chosen size, made with onnx.helper (no training, no torch).

A linear classifier (4 inputs, 3 classes) whose weights come from a seed, so that two seeds
are two versions with different bytes, plus an unused float initializer that pads the file
to the size wanted. It is what it says: a stand-in for a real model's bytes, for measuring
how artifacts travel (rollout benchmark, tests); its predictions mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

INPUTS, CLASSES = 4, 3
# Protobuf framing, names and the weights, measured: what a file holds besides the padding.
OVERHEAD_BYTES = 256


def linear_classifier(path: Path, seed: int, size_bytes: int = 0) -> Path:
    """Write the model to `path`; with `size_bytes`, padded to about that many bytes."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(INPUTS, CLASSES)).astype(np.float32)
    initializers = [numpy_helper.from_array(weights, "w")]
    padding_floats = max(size_bytes - OVERHEAD_BYTES, 0) // 4
    if padding_floats:
        padding = rng.standard_normal(padding_floats, dtype=np.float32)
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
