"""Fixtures of the compression engine's tests: the digits task and a teacher trained on it
once per session (seconds on the CPU), saved whole, as TorchScript and as ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models_hub.compression.builtin import teacher
from models_hub.compression.export import export_onnx
from models_hub.compression.tasks import Task, load_task


@pytest.fixture(scope="session")
def digits() -> Task:
    return load_task("digits")


@pytest.fixture(scope="session")
def digits_teacher(digits: Task) -> torch.nn.Module:
    return teacher(digits, epochs=8)


@pytest.fixture(scope="session")
def files(
    tmp_path_factory: pytest.TempPathFactory, digits: Task, digits_teacher: torch.nn.Module
) -> dict[str, Path]:
    """model.pt (whole), model.ts (TorchScript), model.onnx, calib.npz, eval.npz, and
    unlabelled.npz (calibration inputs without labels)."""
    folder = tmp_path_factory.mktemp("digits")
    paths = {
        name: folder / name
        for name in (
            "model.pt",
            "model.ts",
            "model.onnx",
            "calib.npz",
            "eval.npz",
            "unlabelled.npz",
        )
    }
    torch.save(digits_teacher, paths["model.pt"])
    torch.jit.save(
        torch.jit.trace(digits_teacher, torch.zeros(1, *digits.sample_shape)), paths["model.ts"]
    )
    export_onnx(digits_teacher, digits.sample_shape, paths["model.onnx"])
    digits.train.save(paths["calib.npz"])
    digits.test.save(paths["eval.npz"])
    np.savez(paths["unlabelled.npz"], x=digits.train.x[:200])
    return paths
