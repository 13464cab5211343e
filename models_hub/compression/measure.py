"""What every variant is measured on: accuracy and agreement on the same held-out data,
file size, parameters, FLOPs, latency at batch 1 (1 thread and all threads), and the
estimated latency and energy per inference on each device profile.

Device estimates scale the latency measured here on one thread by the ratio of this
host's measured single-thread float32 GFLOPS to the device's: an estimate that assumes the
device runs the model as efficiently as this CPU does, no better and no worse.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

WARMUP_RUNS = 10
MIN_RUNS = 30
MAX_RUNS = 1000
# Per variant and thread setting; at least MIN_RUNS are taken whatever it costs.
TIME_BUDGET_S = 1.5
EVAL_BATCH = 256


@dataclass(frozen=True)
class DeviceProfile:
    """A class of device the estimates are made for (GFLOPS: float32, as the agents measure)."""

    name: str
    gflops: float
    power_busy_w: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gflops": self.gflops, "power_busy_w": self.power_busy_w}


# Used when the caller names none: one of each tier, figures of the simulated fleet's classes.
DEFAULT_DEVICE_PROFILES = (
    DeviceProfile("end (camera SoC)", 8.0, 5.0),
    DeviceProfile("edge (intersection server)", 120.0, 65.0),
    DeviceProfile("cloud (server node)", 900.0, 300.0),
)


def session(path: str | Path, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime CPU session; `threads=0` lets onnxruntime use every core."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """The model's first output for every sample of `x`."""
    runner = session(path)
    name = runner.get_inputs()[0].name
    outputs = [
        runner.run(None, {name: x[i : i + EVAL_BATCH]})[0] for i in range(0, len(x), EVAL_BATCH)
    ]
    return np.concatenate(outputs).astype(np.float32, copy=False)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == labels))


def agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """How often the variant predicts what the original predicts (labels not needed)."""
    return float(np.mean(outputs.argmax(axis=1) == reference.argmax(axis=1)))


def latency_ms(path: str | Path, sample: np.ndarray, threads: int) -> dict[str, float]:
    """p50 and p95 of single-sample runs, after warm-up, within TIME_BUDGET_S."""
    runner = session(path, threads)
    feed = {runner.get_inputs()[0].name: sample[None, ...]}
    for _ in range(WARMUP_RUNS):
        runner.run(None, feed)
    times: list[float] = []
    deadline = time.perf_counter() + TIME_BUDGET_S
    while len(times) < MIN_RUNS or (len(times) < MAX_RUNS and time.perf_counter() < deadline):
        started = time.perf_counter()
        runner.run(None, feed)
        times.append((time.perf_counter() - started) * 1000.0)
    return {
        "p50": float(np.percentile(times, 50)),
        "p95": float(np.percentile(times, 95)),
        "runs": len(times),
    }


def all_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def host_gflops() -> float:
    """This host's float32 GFLOPS on one thread, from a 512^3 matrix product in onnxruntime."""
    n = 512
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "gflops",
        [helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(np.random.default_rng(0).random((n, n), dtype=np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    runner = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {"a": np.ones((n, n), dtype=np.float32)}
    for _ in range(3):
        runner.run(None, feed)
    best = math.inf
    for _ in range(10):
        started = time.perf_counter()
        runner.run(None, feed)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def device_estimates(
    latency_1thread_ms: float, profiles: Iterable[DeviceProfile]
) -> dict[str, dict[str, float]]:
    """Per device profile: estimated latency (ms) and energy per inference (mJ)."""
    reference = host_gflops()
    estimates = {}
    for profile in profiles:
        latency = latency_1thread_ms * reference / profile.gflops
        estimates[profile.name] = {
            "latency_ms": latency,
            "energy_mj": latency * profile.power_busy_w,  # ms x W = mJ
        }
    return estimates


# --- counting ------------------------------------------------------------------------------

# Inputs that are quantisation scales or zero points, not parameters, by operator.
_NOT_PARAMETERS = {
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
    "QLinearConv": {1, 2, 4, 5, 6, 7},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "MatMulInteger": {2, 3},
    "ConvInteger": {2, 3},
}


def count_parameters(model: onnx.ModelProto) -> int:
    """Elements of the weights and biases, whatever their type; scales and zero points
    of quantisation are not counted."""
    excluded: set[str] = set()
    for node in model.graph.node:
        positions = _NOT_PARAMETERS.get(node.op_type, set())
        excluded.update(name for index, name in enumerate(node.input) if index in positions)
    return sum(
        int(np.prod(init.dims)) for init in model.graph.initializer if init.name not in excluded
    )


def count_flops(model: onnx.ModelProto) -> int:
    """Floating-point (or integer) operations of one inference at batch 1, counting a
    multiply-add as two, for convolutions and matrix products (the rest is negligible)."""
    shapes = _inferred_shapes(model)
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if out is None:
            continue
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            weight = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1])
            if weight is not None:
                total += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
            a = shapes.get(node.input[0])
            if a is not None:
                k = a[0] if node.op_type == "Gemm" and _attribute(node, "transA") else a[-1]
                total += 2 * int(np.prod(out)) * int(k)
    return total


def _attribute(node: onnx.NodeProto, name: str) -> int:
    return next((int(attr.i) for attr in node.attribute if attr.name == name), 0)


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor, with the free batch dimension set to 1."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = {}
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if dims and all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = tuple(dim.dim_value for dim in dims)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes
