"""int8 quantisation: the quantised digits model runs, is smaller, and keeps its accuracy."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from models_hub.compression import CompressionError, load_data
from models_hub.compression.measure import accuracy, count_flops, run_onnx
from models_hub.compression.quantize import (
    StaticOptions,
    quantize_int8_dynamic,
    quantize_int8_static,
)

# The tolerance: at most 1 point of accuracy lost.
TOLERANCE_POINTS = 1.0


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_static_int8_keeps_accuracy_and_shrinks_the_file(
    tmp_path: Path, files: dict[str, Path], calibration: str
) -> None:
    calib = load_data(files["calib.npz"], "calib")
    evaluation = load_data(files["eval.npz"], "eval")
    target = tmp_path / "int8.onnx"
    notes = quantize_int8_static(
        files["model.onnx"], target, calib, StaticOptions.parse({"calibration": calibration})
    )
    assert notes == []
    assert evaluation.y is not None
    before = accuracy(run_onnx(files["model.onnx"], evaluation.x), evaluation.y)
    after = accuracy(run_onnx(target, evaluation.x), evaluation.y)
    assert 100 * (before - after) <= TOLERANCE_POINTS
    assert files["model.onnx"].stat().st_size / target.stat().st_size > 3.0
    operators = {node.op_type for node in onnx.load(target).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    assert count_flops(onnx.load(target)) == count_flops(onnx.load(files["model.onnx"]))


def test_dynamic_int8_on_a_cnn_comes_with_a_warning(tmp_path: Path, files: dict[str, Path]) -> None:
    notes = quantize_int8_dynamic(files["model.onnx"], tmp_path / "dyn.onnx", {})
    assert any("use int8-static for convolutional models" in note for note in notes)
    assert run_onnx(tmp_path / "dyn.onnx", load_data(files["eval.npz"], "eval").x[:4]).shape == (
        4,
        10,
    )


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"calibration": "median"}, "parameters.calibration"),
        ({"activation_type": "int4"}, "parameters.activation_type"),
        ({"per_channel": "yes"}, "parameters.per_channel"),
        ({"calibration_samples": 0}, "parameters.calibration_samples"),
        ({"calibration_samples": 1.5}, "parameters.calibration_samples"),
        ({"percentile": 50}, "parameters.percentile"),
        ({"format": "tflite"}, "parameters.format"),
    ],
)
def test_bad_quantisation_parameters_are_refused(parameters: dict[str, object], field: str) -> None:
    with pytest.raises(CompressionError) as caught:
        StaticOptions.parse(parameters)
    assert caught.value.field == field
