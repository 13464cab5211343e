"""Compression jobs in a real Celery worker that listens to the `compression` queue only:
a job is routed there, runs to success, streams its progress to the channel layer, and its
variant files land in the shared MEDIA_ROOT; a job whose worker process is killed
mid-training is taken over by the broker's next delivery and still succeeds.

On this process's own stack (Redis in CI, the embedded broker and channel layer locally).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from models_hub import actions
from models_hub.events import job_group
from models_hub.models import CompressionJob, CompressionJobStatus, DatasetPurpose, Variant
from tests.fleet.helpers import GroupListener
from tests.integration.conftest import Stack
from tests.integration.processes import Processes
from tests.models_hub.conftest import register_dataset, register_model
from tests.models_hub.helpers import make_files

pytestmark = pytest.mark.service

JOB_TIMEOUT_S = 180
# Prune-distill epochs on the digits model: a few seconds of training, long enough to be
# caught mid-run, short enough to run twice (the takeover starts from the start).
LONG_RUN_EPOCHS = 30


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_files(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """A MEDIA_ROOT that this process and the worker share."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def own_stack(subprocess_env: dict[str, str], media: Path, tmp_path: Path) -> Stack:
    """The broker this process sends to (submit enqueues from here). The worker's scratch
    folders go under the test's own folder, where the kill test checks they are removed."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**subprocess_env, "TRIAD_MEDIA_ROOT": str(media), "TMPDIR": str(scratch)}
    return Stack("redis" if settings.REDIS_URL else "embedded", env)


def wait_task_returned(processes: Processes, worker: Any, outcome: str) -> None:
    """Wait for the task to return, so that teardown never kills a worker mid-task (with
    acks_late, that would leave the message queued for the next test's worker)."""
    done = re.compile(rf"run_compression_job\[[0-9a-f-]+\] succeeded in [\d.]+s: '{outcome}'")
    processes.wait_until(lambda: done.search(worker.log()), f"the task to return {outcome}", 30)


def test_a_compression_worker_runs_a_job_to_success(
    own_stack: Stack, processes: Processes, files: dict[str, Path], media: Path, operator: Any
) -> None:
    model = register_model(files["model.onnx"], operator)
    calibration = register_dataset(files["calib.npz"], DatasetPurpose.CALIBRATION, operator)
    evaluation = register_dataset(files["eval.npz"], DatasetPurpose.EVALUATION, operator)
    worker = processes.worker(own_stack.env, queues="compression")
    processes.wait_worker_ready(worker)
    with transaction.atomic():
        job = actions.submit_compression_job(
            model=model,
            recipe="int8-static",
            calibration=calibration,
            evaluation=evaluation,
            created_by=operator,
        )
        # Listening before the commit sends the task: no event can come before.
        listener = GroupListener(get_channel_layer(), job_group(job.id))
    try:
        events = listener.messages_until(
            lambda m: m["type"] == "job.status" and m["job"]["status"] in ("succeeded", "failed"),
            JOB_TIMEOUT_S,
        )
    finally:
        listener.close()
    wait_task_returned(processes, worker, "succeeded")

    job = CompressionJob.objects.get(pk=job.pk)
    assert (job.status, job.attempts, job.error) == (CompressionJobStatus.SUCCEEDED, 1, "")
    statuses = [m["job"]["status"] for m in events if m["type"] == "job.status"]
    assert statuses == ["queued", "running", "succeeded"]
    progress = [m["progress"] for m in events if m["type"] == "job.progress"]
    assert progress and progress[-1] == 1.0
    variant = Variant.objects.get(job=job)
    stored = media / variant.file.name
    assert actions.file_sha256(stored) == variant.sha256
    assert actions.file_sha256(media / model.file.name) == model.sha256


def test_a_job_whose_worker_is_killed_is_taken_over(
    own_stack: Stack, processes: Processes, files: dict[str, Path], media: Path, operator: Any
) -> None:
    """acks_late + reject_on_worker_lost deliver the task again; the new delivery waits
    for the dead attempt's heartbeat to go stale (JOB_STALE_AFTER), takes the job over
    (attempt 2) and runs the recipe from the start."""
    model = register_model(files["model.pt"], operator)
    calibration = register_dataset(files["calib.npz"], DatasetPurpose.CALIBRATION, operator)
    evaluation = register_dataset(files["eval.npz"], DatasetPurpose.EVALUATION, operator)
    worker = processes.worker(own_stack.env, pool="prefork", queues="compression")
    processes.wait_worker_ready(worker)
    job = actions.submit_compression_job(
        model=model,
        recipe="prune-distill:0.5",
        calibration=calibration,
        evaluation=evaluation,
        created_by=operator,
        parameters={"epochs": LONG_RUN_EPOCHS},
    )

    def training() -> CompressionJob | None:
        state = CompressionJob.objects.get(pk=job.pk)
        return state if re.search(r"epoch \d+,", state.stage) else None

    first = processes.wait_until(training, f"job {job.id} to train", JOB_TIMEOUT_S)
    assert (first.status, first.attempts) == (CompressionJobStatus.RUNNING, 1)

    pool_process = psutil.Process(worker.pid).children()[0]
    os.kill(pool_process.pid, signal.SIGKILL)
    processes.wait_until(
        lambda: "WorkerLostError" in worker.log(), "the worker to report the lost job", 40
    )

    def finished() -> CompressionJob | None:
        state = CompressionJob.objects.get(pk=job.pk)
        return state if state.status != CompressionJobStatus.RUNNING else None

    done = processes.wait_until(finished, f"job {job.id} to finish", JOB_TIMEOUT_S)
    wait_task_returned(processes, worker, "succeeded")
    assert (done.status, done.attempts, done.error) == (CompressionJobStatus.SUCCEEDED, 2, "")
    assert "attempt 2 started (taking over from a worker that stopped)" in done.log
    assert f"epoch {LONG_RUN_EPOCHS}," in done.log
    variant = Variant.objects.get(job=job)
    assert variant.file.name.startswith(f"variants/{job.id}/2/")
    assert actions.file_sha256(media / variant.file.name) == variant.sha256
    assert not (media / f"variants/{job.id}/1").exists()
    scratch = Path(own_stack.env["TMPDIR"])
    assert not list(scratch.glob(f"triad-compression-{job.id}-*")), "the dead attempt's copies"
