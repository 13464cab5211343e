"""Export: both exporters write one self-contained file whose outputs match torch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models_hub.compression import CompressionError
from models_hub.compression.architectures import MobileNetStyle, ResNet18Style
from models_hub.compression.export import check_parity, export_onnx
from models_hub.compression.measure import run_onnx
from models_hub.compression.tasks import Task


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_exporters_match_torch(
    tmp_path: Path, digits: Task, digits_teacher: torch.nn.Module, exporter: str
) -> None:
    path = export_onnx(digits_teacher, digits.sample_shape, tmp_path / "m.onnx", exporter)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"], "no external data files"
    parity = check_parity(digits_teacher, path, digits.test.x[:64])
    assert parity.max_abs_diff < 1e-4
    # The batch dimension is free: a batch of 7 runs.
    assert run_onnx(path, digits.test.x[:7]).shape == (7, 10)


@pytest.mark.parametrize("model", [ResNet18Style(3, 10, width=8), MobileNetStyle(num_classes=10)])
def test_reference_architectures_export(tmp_path: Path, model: torch.nn.Module) -> None:
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    path = export_onnx(model.eval(), (3, 64, 64), tmp_path / "m.onnx")
    check_parity(model, path, x)
    onnx.checker.check_model(onnx.load(path))


def test_a_mismatch_between_torch_and_onnx_is_refused(
    tmp_path: Path, digits: Task, digits_teacher: torch.nn.Module
) -> None:
    path = export_onnx(digits_teacher, digits.sample_shape, tmp_path / "m.onnx")
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10)).eval()
    with pytest.raises(CompressionError, match="differ from torch"):
        check_parity(other, path, digits.test.x[:8])


def test_an_unknown_exporter_is_refused(tmp_path: Path, digits_teacher: torch.nn.Module) -> None:
    with pytest.raises(CompressionError) as caught:
        export_onnx(digits_teacher, (1, 16, 16), tmp_path / "m.onnx", "tflite")
    assert caught.value.field == "exporter"
