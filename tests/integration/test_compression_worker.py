"""A compression job in a real Celery worker that listens to the `compression` queue only:
the job is routed there, runs to success, streams its progress to the channel layer, and
its variant files land in the shared MEDIA_ROOT.

On this process's own stack (Redis in CI, the embedded broker and channel layer locally).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
def own_stack(subprocess_env: dict[str, str], media: Path) -> Stack:
    """The broker this process sends to (submit enqueues from here)."""
    env = {**subprocess_env, "TRIAD_MEDIA_ROOT": str(media)}
    return Stack("redis" if settings.REDIS_URL else "embedded", env)


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
    done = re.compile(r"run_compression_job\[[0-9a-f-]+\] succeeded in [\d.]+s: 'succeeded'")
    processes.wait_until(lambda: done.search(worker.log()), "the task to return", 30)

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
