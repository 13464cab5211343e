"""Files for the model hub tests: a tiny CNN trained for a few seconds on the digits task,
saved whole and as ONNX, with calibration and evaluation data, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper
from torch import nn

from models_hub.compression.architectures import SmallCNN
from models_hub.compression.export import export_onnx
from models_hub.compression.tasks import digits
from models_hub.compression.training import TrainOptions, train

SAMPLE_SHAPE = (1, 16, 16)
CALIBRATION_SAMPLES = 200
EVALUATION_SAMPLES = 200


class Untrusted(nn.Module):
    """A module class no one vetted: a whole-model pickle naming it is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1))


def make_files(folder: Path) -> dict[str, Path]:
    """model.pt (saved whole), model.onnx, calib.npz and eval.npz (labelled),
    unlabelled.npz, untrusted.pt (a pickle naming a class of these tests) and bogus-op.onnx
    (an operator onnxruntime does not have)."""
    task = digits()
    torch.manual_seed(0)
    model = train(
        SmallCNN(1, 10, width=8), task.train.take(1000), TrainOptions(epochs=3, learning_rate=1e-2)
    )
    paths = {
        name: folder / name
        for name in (
            "model.pt",
            "model.onnx",
            "calib.npz",
            "eval.npz",
            "unlabelled.npz",
            "untrusted.pt",
            "bogus-op.onnx",
        )
    }
    torch.save(model, paths["model.pt"])
    export_onnx(model, SAMPLE_SHAPE, paths["model.onnx"])
    task.train.take(CALIBRATION_SAMPLES).save(paths["calib.npz"])
    task.test.take(EVALUATION_SAMPLES).save(paths["eval.npz"])
    np.savez(paths["unlabelled.npz"], x=task.train.x[:50])
    torch.save(Untrusted(), paths["untrusted.pt"])
    onnx.save(bogus_operator_model(), paths["bogus-op.onnx"])
    return paths


def bogus_operator_model() -> onnx.ModelProto:
    """A well-formed ONNX model whose one node is an operator of a domain nobody implements."""
    node = helper.make_node("Frobnicate", ["input"], ["output"], domain="com.example.bogus")
    graph = helper.make_graph(
        [node],
        "bogus",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, *SAMPLE_SHAPE])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [None, 10])],
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.bogus", 1)],
    )
