"""Fixtures of the model hub tests: a tiny CNN trained briefly on the digits task, once per
session, saved whole and as ONNX, with calibration and evaluation data files; registered
models and data sets; jobs.

Every test gets a MEDIA_ROOT of its own, so that "nothing stored" can be checked by
listing it. The model is tiny (a few thousand parameters) so that a whole compression
job, measurements included, runs in seconds: these tests check what is stored and
announced, not how good the variants are (the engine's tests do that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from models_hub import actions, tasks
from models_hub.compression import measure
from models_hub.models import CompressionJob, Dataset, DatasetPurpose, ModelArtifact
from models_hub.tasks import run_compression_job
from tests.models_hub.helpers import SAMPLE_SHAPE, make_files


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_files(tmp_path_factory.mktemp("hub"))


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    """A MEDIA_ROOT of the test's own."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(autouse=True)
def no_heartbeat_in_test_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job run in this process runs inside the test's transaction, which holds the job's
    row (PostgreSQL) or the database's write lock (SQLite): the heartbeat thread's own
    connection would wait on it, and the task waits for that thread. Tests of the heartbeat
    set their own interval, in transactional tests."""
    monkeypatch.setattr(tasks, "HEARTBEAT_INTERVAL_S", 3600.0)


@pytest.fixture(autouse=True)
def quick_measures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Latency from fewer runs: these tests check what is stored, not the figures."""
    monkeypatch.setattr(measure, "WARMUP_RUNS", 2)
    monkeypatch.setattr(measure, "MIN_RUNS", 5)
    monkeypatch.setattr(measure, "TIME_BUDGET_S", 0.05)


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def uploaded(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def register_model(path: Path, user: Any, **fields: Any) -> ModelArtifact:
    options = {"name": "digits-cnn", "version": "1", "input_shape": list(SAMPLE_SHAPE), **fields}
    return actions.register_model(upload=uploaded(path), created_by=user, **options)


def register_dataset(path: Path, purpose: str, user: Any, **fields: Any) -> Dataset:
    options = {"name": path.stem, **fields}
    return actions.register_dataset(
        upload=uploaded(path), purpose=purpose, created_by=user, **options
    )


@pytest.fixture
def onnx_model(files: dict[str, Path], operator: Any) -> ModelArtifact:
    return register_model(files["model.onnx"], operator, name="digits-onnx")


@pytest.fixture
def torch_model(files: dict[str, Path], operator: Any) -> ModelArtifact:
    return register_model(files["model.pt"], operator, name="digits-torch")


@pytest.fixture
def calibration_set(files: dict[str, Path], operator: Any) -> Dataset:
    return register_dataset(files["calib.npz"], DatasetPurpose.CALIBRATION, operator)


@pytest.fixture
def evaluation_set(files: dict[str, Path], operator: Any) -> Dataset:
    return register_dataset(files["eval.npz"], DatasetPurpose.EVALUATION, operator)


def submit(
    model: ModelArtifact,
    calibration: Dataset,
    evaluation: Dataset,
    user: Any,
    recipe: str = "int8-static",
    **extra: Any,
) -> CompressionJob:
    return actions.submit_compression_job(
        model=model,
        recipe=recipe,
        calibration=calibration,
        evaluation=evaluation,
        created_by=user,
        **extra,
    )


@pytest.fixture
def job(
    onnx_model: ModelArtifact, calibration_set: Dataset, evaluation_set: Dataset, operator: Any
) -> CompressionJob:
    """A queued int8-static job on the ONNX model (its task is never sent: test
    transactions do not commit)."""
    return submit(onnx_model, calibration_set, evaluation_set, operator)


def run_here(job: CompressionJob) -> CompressionJob:
    """Run the job's Celery task in this process, as a worker would."""
    run_compression_job(str(job.id))
    job.refresh_from_db()
    return job


@pytest.fixture
def succeeded_job(job: CompressionJob) -> CompressionJob:
    run_here(job)
    assert job.status == "succeeded", (job.error, job.log)
    return job
