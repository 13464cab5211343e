"""Structured pruning lowers FLOPs and parameters and leaves a runnable, exportable model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_hub.compression import CompressionError
from models_hub.compression.architectures import MobileNetStyle, ResNet18Style
from models_hub.compression.export import check_parity, export_onnx
from models_hub.compression.prune import PruneOptions, count_parameters, prune
from models_hub.compression.tasks import Task


@pytest.mark.parametrize("importance", ["magnitude", "l1", "taylor", "lamp", "fpgm", "random"])
def test_pruning_lowers_flops_and_stays_exportable(
    tmp_path: Path, digits: Task, digits_teacher: torch.nn.Module, importance: str
) -> None:
    import onnx

    from models_hub.compression.measure import count_flops

    before = count_parameters(digits_teacher)
    state = {k: v.clone() for k, v in digits_teacher.state_dict().items()}
    pruned = prune(digits_teacher, digits.sample_shape, digits.train, PruneOptions(0.5, importance))
    assert count_parameters(pruned) < 0.4 * before
    assert count_parameters(digits_teacher) == before, "the original is left as it was"
    assert all(torch.equal(state[k], v) for k, v in digits_teacher.state_dict().items())
    original_path = export_onnx(digits_teacher, digits.sample_shape, tmp_path / "original.onnx")
    pruned_path = export_onnx(pruned, digits.sample_shape, tmp_path / "pruned.onnx")
    check_parity(pruned, pruned_path, digits.test.x[:32])
    assert count_flops(onnx.load(pruned_path)) < 0.4 * count_flops(onnx.load(original_path))
    assert pruned(torch.from_numpy(digits.test.x[:3])).shape == (3, 10), "the classes are kept"


@pytest.mark.parametrize("model", [ResNet18Style(3, 10, width=16), MobileNetStyle(num_classes=10)])
def test_residual_architectures_prune_consistently(model: torch.nn.Module, digits: Task) -> None:
    import numpy as np

    from models_hub.compression.data import Data

    data = Data(np.zeros((4, 3, 32, 32), np.float32), None)
    pruned = prune(model.eval(), (3, 32, 32), data, PruneOptions(0.5))
    assert pruned(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert count_parameters(pruned) < 0.5 * count_parameters(model)


def test_ignored_layers_keep_their_channels(digits: Task, digits_teacher: torch.nn.Module) -> None:
    pruned = prune(
        digits_teacher,
        digits.sample_shape,
        digits.train,
        PruneOptions(0.5, ignored_layers=("features.0.0",)),
    )
    assert dict(pruned.named_modules())["features.0.0"].out_channels == 32


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"importance": "vibes"}, "parameters.importance"),
        ({"ignored_layers": "features.0.0"}, "parameters.ignored_layers"),
        ({"global_pruning": 1}, "parameters.global_pruning"),
    ],
)
def test_bad_pruning_parameters_are_refused(parameters: dict[str, object], field: str) -> None:
    with pytest.raises(CompressionError) as caught:
        PruneOptions.parse(0.5, parameters)
    assert caught.value.field == field


def test_an_unknown_ignored_layer_is_refused(digits: Task, digits_teacher: torch.nn.Module) -> None:
    with pytest.raises(CompressionError) as caught:
        prune(
            digits_teacher,
            digits.sample_shape,
            digits.train,
            PruneOptions(0.5, ignored_layers=("nope",)),
        )
    assert caught.value.field == "parameters.ignored_layers"


def test_torchscript_cannot_be_pruned(digits: Task, digits_teacher: torch.nn.Module) -> None:
    scripted = torch.jit.trace(digits_teacher, torch.zeros(1, 1, 16, 16))
    with pytest.raises(CompressionError, match="cannot be pruned"):
        prune(scripted, digits.sample_shape, digits.train, PruneOptions(0.5))
