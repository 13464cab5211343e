"""Write a built-in task to a folder: a trained teacher and its data files, ready for
``python -m models_hub compress``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from models_hub.compression.architectures import ResNet18Style, SmallCNN
from models_hub.compression.export import export_onnx
from models_hub.compression.measure import accuracy
from models_hub.compression.tasks import Task, load_task
from models_hub.compression.training import TrainOptions, predict, train


def teacher(
    task: Task, arch: str = "small-cnn", epochs: int = 10, seed: int = 0
) -> torch.nn.Module:
    torch.manual_seed(seed)
    channels = task.sample_shape[0]
    model: torch.nn.Module
    if arch == "resnet18-style":
        model = ResNet18Style(channels, task.num_classes, small_input=True)
    else:
        model = SmallCNN(channels, task.num_classes)
    return train(model, task.train, TrainOptions(epochs=epochs, seed=seed))


def write_task(name: str, out: Path, arch: str, epochs: int, seed: int) -> dict[str, Any]:
    """model.pt (saved whole), model.onnx (its ONNX export, what agents run), calib.npz (the
    training split), eval.npz (the test split) and task.json describing them."""
    task = load_task(name, seed)
    started = time.perf_counter()
    model = teacher(task, arch, epochs, seed)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model, out / "model.pt")
    export_onnx(model, task.sample_shape, out / "model.onnx")
    task.train.save(out / "calib.npz")
    task.test.save(out / "eval.npz")
    assert task.test.y is not None
    info = {
        "task": task.name,
        "description": task.description,
        "classes": list(task.class_names),
        "sample_shape": list(task.sample_shape),
        "train_samples": len(task.train),
        "test_samples": len(task.test),
        "architecture": arch,
        "epochs": epochs,
        "test_accuracy": accuracy(predict(model, task.test.x), task.test.y),
        "training_seconds": time.perf_counter() - started,
        "files": ["model.pt", "model.onnx", "calib.npz", "eval.npz"],
    }
    (out / "task.json").write_text(json.dumps(info, indent=2))
    return info
