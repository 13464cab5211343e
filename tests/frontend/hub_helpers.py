"""Shared by the model hub page, WebSocket and browser tests: the tiny digits CNN and its
data files (built once per test session), registrations through the actions, and quick
latency measurements for jobs run in the test's own process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from models_hub import actions
from models_hub.models import CompressionJob, Dataset, DatasetPurpose, ModelArtifact
from models_hub.tasks import run_compression_job

SAMPLE_SHAPE = [1, 16, 16]
FILE_NAMES = ("model.pt", "model.onnx", "calib.npz", "eval.npz", "unlabelled.npz", "untrusted.pt")


def hub_files(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tests/models_hub's files (a CNN trained for a few seconds on the digits task, saved
    whole and as ONNX; labelled calibration and evaluation data; unlabelled data; a pickle
    of an untrusted class; an ONNX file with an unknown operator), made once per session
    whichever test directory asks first."""
    from tests.models_hub.helpers import make_files

    folder = factory.getbasetemp() / "hub-files"
    if not all((folder / name).exists() for name in FILE_NAMES):
        folder.mkdir(exist_ok=True)
        make_files(folder)
    return {path.name: path for path in folder.iterdir()}


def quick_measures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Latency from fewer runs, for jobs run in this process: the page tests check what is
    shown, not the figures."""
    from models_hub.compression import measure

    monkeypatch.setattr(measure, "WARMUP_RUNS", 2)
    monkeypatch.setattr(measure, "MIN_RUNS", 5)
    monkeypatch.setattr(measure, "TIME_BUDGET_S", 0.05)


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def uploaded(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def register_model(path: Path, user: Any, **fields: Any) -> ModelArtifact:
    options = {"name": "digits-cnn", "version": "1", "input_shape": SAMPLE_SHAPE, **fields}
    return actions.register_model(upload=uploaded(path), created_by=user, **options)


def register_dataset(path: Path, purpose: str, user: Any, **fields: Any) -> Dataset:
    options = {"name": path.stem, **fields}
    return actions.register_dataset(
        upload=uploaded(path), purpose=purpose, created_by=user, **options
    )


def register_data(files: dict[str, Path], user: Any) -> tuple[Dataset, Dataset]:
    """The labelled calibration and evaluation sets."""
    return (
        register_dataset(files["calib.npz"], DatasetPurpose.CALIBRATION, user, name="digits-calib"),
        register_dataset(files["eval.npz"], DatasetPurpose.EVALUATION, user, name="digits-eval"),
    )


def run_here(job: CompressionJob) -> CompressionJob:
    """Run the job's Celery task in this process, as a worker would."""
    run_compression_job(str(job.id))
    job.refresh_from_db()
    return job
