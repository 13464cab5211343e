"""Tiny ONNX models built with onnx.helper: fast to load, with predictable outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def matmul_model(
    inputs: int = 4,
    outputs: int = 3,
    input_name: str = "input",
    output_name: str = "logits",
    weights: np.ndarray[Any, Any] | None = None,
) -> bytes:
    """``logits = input @ W`` with input [N, inputs] and logits [N, outputs].

    The default W copies the first ``outputs`` features, so argmax(logits) is the argmax of
    those features: a test can make labels that the model gets right (or wrong) on purpose.
    """
    if weights is None:
        weights = np.eye(inputs, outputs, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "W"], [output_name])],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", inputs])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", outputs])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def io_for(inputs: int = 4, outputs: int = 3) -> dict[str, Any]:
    """The manifest ``io`` that matches ``matmul_model(inputs, outputs)``."""
    return {
        "inputs": [{"name": "input", "shape": [None, inputs], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [None, outputs], "dtype": "float32"}],
    }
