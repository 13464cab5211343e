"""Fixtures of the scheduling tests: a small online fleet, a workload, jobs in each state.

Solve parameters stay tiny (a few generations of a few individuals): these tests check
what is stored and announced, not the quality of the front (the engine tests do that).
"""

from __future__ import annotations

from typing import Any

import pytest

from devices.models import Device, DeviceStatus
from scheduling import actions
from scheduling.models import JobStatus, SchedulingJob, Solution, SolutionKind, Workload
from scheduling.tasks import run_scheduling_job

# Enough for the video pipeline: its decoders are pinned to the end tier, and its largest
# detector (3 GB) fits the cloud, the edge server and the larger camera.
FLEET_PROFILES: dict[str, dict[str, Any]] = {
    "cloud-0": {"tier": "cloud", "gflops": 1000.0, "memory_mb": 65536, "power_idle_w": 100.0,
                "power_busy_w": 300.0, "cost_per_hour": 2.0},
    "edge-0": {"tier": "edge", "gflops": 200.0, "memory_mb": 16384, "power_idle_w": 30.0,
               "power_busy_w": 90.0, "cost_per_hour": 0.2},
    "cam-0": {"tier": "end", "gflops": 10.0, "memory_mb": 4096, "power_idle_w": 2.0,
              "power_busy_w": 8.0},
    "cam-1": {"tier": "end", "gflops": 8.0, "memory_mb": 2048, "power_idle_w": 2.0,
              "power_busy_w": 6.0},
}  # fmt: skip

SMALL_RUN: dict[str, Any] = {
    "objectives": ["makespan", "energy"],
    "algorithm": "nsga2",
    "generations": 4,
    "population": 8,
    "seed": 1,
}

TWO_TASKS: dict[str, Any] = {
    "tasks": [
        {"id": "a", "flops": 1e9, "memory_mb": 128},
        {"id": "b", "flops": 2e9, "memory_mb": 256},
    ],
    "edges": [{"from": "a", "to": "b", "bytes": 1e6}],
}


def make_device(name: str, status: str = DeviceStatus.ONLINE, **profile: Any) -> Device:
    """A device row written directly: these tests arrange the fleet, scheduling reads it."""
    fields = {**FLEET_PROFILES.get(name, FLEET_PROFILES["edge-0"]), **profile}
    return Device.objects.create(name=name, status=status, cpu_cores=4, **fields)


def make_fleet() -> list[Device]:
    return [make_device(name) for name in FLEET_PROFILES]


def video_workload(cameras: int, user: Any) -> Workload:
    return actions.create_workload_from_template(
        name=f"{cameras} cameras",
        template="video-pipeline",
        parameters={"cameras": cameras},
        created_by=user,
    )


@pytest.fixture
def fleet(db: Any) -> list[Device]:
    return make_fleet()


@pytest.fixture
def workload(operator: Any) -> Workload:
    return video_workload(2, operator)


def submit(workload: Workload, user: Any, **overrides: Any) -> SchedulingJob:
    return actions.submit_job(workload=workload, created_by=user, **{**SMALL_RUN, **overrides})


@pytest.fixture
def job(workload: Workload, fleet: list[Device], operator: Any) -> SchedulingJob:
    """A queued job (its task is never sent: test transactions do not commit)."""
    return submit(workload, operator)


def run_here(job: SchedulingJob) -> SchedulingJob:
    """Run the job's Celery task in this process, as a worker would."""
    run_scheduling_job(str(job.id))
    job.refresh_from_db()
    return job


@pytest.fixture
def succeeded_job(job: SchedulingJob) -> SchedulingJob:
    run_here(job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


@pytest.fixture
def knee(succeeded_job: SchedulingJob) -> Solution:
    return Solution.objects.get(job=succeeded_job, kind=SolutionKind.FRONT, is_knee=True)
