"""Counting and timing, checked against hand-computed figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models_hub.compression import measure
from models_hub.compression.export import export_onnx


class ConvThenLinear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.linear = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.conv(x).flatten(1))


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("measure") / "m.onnx"
    return export_onnx(ConvThenLinear().eval(), (2, 8, 8), path)


def test_flops_and_parameters_match_hand_counts(small_model: Path) -> None:
    import onnx

    model = onnx.load(small_model)
    conv_flops = 2 * (4 * 8 * 8) * (2 * 3 * 3)  # outputs x (inputs per output)
    linear_flops = 2 * 5 * 256
    assert measure.count_flops(model) == conv_flops + linear_flops
    assert measure.count_parameters(model) == (4 * 2 * 9 + 4) + (256 * 5 + 5)


def test_latency_has_percentiles_from_repeated_runs(small_model: Path) -> None:
    sample = np.zeros((2, 8, 8), np.float32)
    latency = measure.latency_ms(small_model, sample, threads=1)
    assert latency["runs"] >= measure.MIN_RUNS
    assert 0 < latency["p50"] <= latency["p95"]


def test_device_estimates_scale_with_gflops_and_power() -> None:
    slow = measure.DeviceProfile("slow", 10.0, 5.0)
    fast = measure.DeviceProfile("fast", 100.0, 50.0)
    estimates = measure.device_estimates(2.0, [slow, fast])
    assert estimates["slow"]["latency_ms"] == pytest.approx(10 * estimates["fast"]["latency_ms"])
    # 10x faster at 10x the power: the same energy.
    assert estimates["slow"]["energy_mj"] == pytest.approx(estimates["fast"]["energy_mj"])
    assert estimates["slow"]["latency_ms"] == pytest.approx(2.0 * measure.host_gflops() / 10.0)


def test_accuracy_and_agreement() -> None:
    outputs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    assert measure.accuracy(outputs, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    reference = np.array([[1, 0], [1, 0], [1, 0]], np.float32)  # predicts 0, 0, 0
    assert measure.agreement(outputs, reference) == pytest.approx(2 / 3)
