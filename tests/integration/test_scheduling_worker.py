"""Scheduling jobs in a real Celery worker: a job runs to success while its progress
reaches the channel layer, a running job is cancelled, and a job whose worker process is
killed mid-solve is taken over by the broker's next delivery and still succeeds.

On this process's own stack (Redis in CI, the embedded broker and channel layer locally):
tests/integration/test_celery_worker.py already proves both stacks carry worker events.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from devices.models import Device
from scheduling import actions
from scheduling.events import job_group
from scheduling.models import JobStatus, SchedulingJob, Solution, SolutionKind, Workload
from tests.fleet.helpers import GroupListener
from tests.integration.conftest import Stack
from tests.integration.processes import Processes
from tests.scheduling.conftest import make_fleet, video_workload

pytestmark = pytest.mark.service

# Long enough (seconds of solving) to be caught running, on a loaded 2-core machine too.
LONG_RUN = {"generations": 1000, "population": 100}
JOB_TIMEOUT_S = 120


@pytest.fixture
def own_stack(subprocess_env: dict[str, str]) -> Stack:
    """The broker this process sends to (submit_job enqueues from here)."""
    return Stack("redis" if settings.REDIS_URL else "embedded", subprocess_env)


@pytest.fixture
def fleet(transactional_db: Any) -> list[Device]:
    return make_fleet()


@pytest.fixture
def two_cameras(operator: Any) -> Workload:
    return video_workload(2, operator)


@pytest.fixture
def twenty_cameras(operator: Any) -> Workload:
    return video_workload(20, operator)


def submit(workload: Workload, user: Any, **run: Any) -> SchedulingJob:
    options = {"objectives": ["makespan", "energy", "cost"], "algorithm": "nsga2",
               "generations": 30, "population": 16, "seed": 1, **run}  # fmt: skip
    return actions.submit_job(workload=workload, created_by=user, **options)


def wait_for(
    processes: Processes, job: SchedulingJob, holds: Callable[[SchedulingJob], bool], what: str
) -> SchedulingJob:
    """Poll the job's row until `holds`; return the row."""

    def check() -> SchedulingJob | None:
        state = SchedulingJob.objects.get(pk=job.pk)
        return state if holds(state) else None

    return processes.wait_until(check, f"job {job.id} {what}", JOB_TIMEOUT_S, 0.1)


def wait_status(processes: Processes, job: SchedulingJob, status: str) -> SchedulingJob:
    return wait_for(processes, job, lambda state: state.status == status, f"to be {status}")


def wait_progress(processes: Processes, job: SchedulingJob) -> SchedulingJob:
    return wait_for(processes, job, lambda state: state.progress is not None, "to progress")


def wait_task_returned(processes: Processes, worker: Any, outcome: str) -> None:
    """Wait for the task to return, so that teardown never kills a worker mid-task."""
    done = re.compile(rf"run_scheduling_job\[[0-9a-f-]+\] succeeded in [\d.]+s: '{outcome}'")
    processes.wait_until(lambda: done.search(worker.log()), f"the task to return {outcome}", 30)


def test_worker_solves_a_job_and_streams_its_progress(
    own_stack: Stack, processes: Processes, fleet: Any, two_cameras: Workload, operator: Any
) -> None:
    worker = processes.worker(own_stack.env)
    processes.wait_worker_ready(worker)
    with transaction.atomic():
        job = submit(two_cameras, operator)
        # Listening before the commit sends the task: no event can come before.
        listener = GroupListener(get_channel_layer(), job_group(job.id))
    try:
        done = wait_status(processes, job, JobStatus.SUCCEEDED)
        events = listener.messages_until(
            lambda m: m["type"] == "job.status" and m["job"]["status"] == "succeeded", 30
        )
    finally:
        listener.close()
    wait_task_returned(processes, worker, "succeeded")

    assert (done.attempts, done.error) == (1, "")
    assert [entry["generation"] for entry in done.history] == list(range(1, 31))
    assert Solution.objects.filter(job=job, kind=SolutionKind.FRONT, is_knee=True).count() == 1
    assert Solution.objects.filter(job=job, kind=SolutionKind.BASELINE, name="heft").exists()
    statuses = [m["job"]["status"] for m in events if m["type"] == "job.status"]
    assert statuses == ["queued", "running", "succeeded"]
    streamed = [
        e["generation"] for m in events if m["type"] == "job.progress" for e in m["entries"]
    ]
    assert streamed == list(range(1, 31))


def test_a_running_job_is_cancelled(
    own_stack: Stack, processes: Processes, fleet: Any, twenty_cameras: Workload, operator: Any
) -> None:
    worker = processes.worker(own_stack.env)
    processes.wait_worker_ready(worker)
    job = submit(twenty_cameras, operator, generations=2000, population=100)
    wait_progress(processes, job)

    actions.request_cancel(job)

    cancelled = wait_status(processes, job, JobStatus.CANCELLED)
    wait_task_returned(processes, worker, "cancelled")
    assert cancelled.finished_at is not None
    assert 0 < len(cancelled.history) < 2000
    assert not Solution.objects.filter(job=job).exists()


def test_a_job_whose_worker_is_killed_is_taken_over(
    own_stack: Stack, processes: Processes, fleet: Any, twenty_cameras: Workload, operator: Any
) -> None:
    """acks_late + reject_on_worker_lost deliver the task again; the new delivery waits
    for the dead attempt's heartbeat to go stale, takes the job over (attempt 2) and
    solves it from the start."""
    worker = processes.worker(own_stack.env, pool="prefork")
    processes.wait_worker_ready(worker)
    job = submit(twenty_cameras, operator, **LONG_RUN)
    first = wait_progress(processes, job)
    assert (first.status, first.attempts) == (JobStatus.RUNNING, 1)

    pool_process = psutil.Process(worker.pid).children()[0]
    os.kill(pool_process.pid, signal.SIGKILL)
    processes.wait_until(
        lambda: "WorkerLostError" in worker.log(), "the worker to report the lost job", 40
    )

    done = wait_status(processes, job, JobStatus.SUCCEEDED)
    wait_task_returned(processes, worker, "succeeded")
    assert done.attempts == 2
    assert len(done.history) == LONG_RUN["generations"]
    assert Solution.objects.filter(job=job, kind=SolutionKind.FRONT).exists()
