"""The Celery task, run in this process: claims, results, cancellation, failure, takeover.

tests/integration/test_scheduling_worker.py runs it in a real worker.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError

from scheduling import actions, tasks
from scheduling.models import JobStatus, SchedulingJob, Solution, SolutionKind
from scheduling.tasks import Heartbeat, claim_job, run_scheduling_job, solve_job
from tests.scheduling.conftest import run_here, submit
from tests.scheduling.test_actions import make_stale


def test_job_succeeds_with_its_front_baselines_and_history(job: SchedulingJob) -> None:
    run_here(job)
    assert (job.status, job.attempts, job.error) == (JobStatus.SUCCEEDED, 1, "")
    assert [entry["generation"] for entry in job.history] == [1, 2, 3, 4]
    assert job.progress == job.history[-1]
    assert job.front_dominates_baselines is not None and job.wall_time_s is not None
    assert job.started_at is not None and job.finished_at is not None
    front = Solution.objects.filter(job=job, kind=SolutionKind.FRONT)
    baselines = Solution.objects.filter(job=job, kind=SolutionKind.BASELINE)
    assert front.exists() and front.filter(is_knee=True).count() == 1
    assert {"heft", "all_cloud"} <= set(baselines.values_list("name", flat=True))
    assert all(b.hypervolume is not None for b in baselines)
    device_ids = {d["id"] for d in job.problem["devices"]}
    for solution in front:
        assert set(solution.assignment.values()) <= device_ids
        assert solution.feasible


def test_a_second_delivery_changes_nothing(job: SchedulingJob) -> None:
    run_here(job)
    stored = set(Solution.objects.filter(job=job).values_list("id", flat=True))
    assert run_scheduling_job(str(job.id)) == "not claimed"
    assert set(Solution.objects.filter(job=job).values_list("id", flat=True)) == stored


def test_unknown_job_is_not_claimed(db: Any) -> None:
    assert run_scheduling_job("00000000-0000-0000-0000-000000000000") == "not claimed"


def test_earlier_attempts_solutions_are_replaced(job: SchedulingJob) -> None:
    attempt = actions.start_attempt(job.id)
    assert attempt == 1
    Solution.objects.create(
        job=job, kind=SolutionKind.FRONT, index=0, objectives={}, assignment={}, timeline=[]
    )
    make_stale(job)
    run_here(job)
    assert job.attempts == 2
    assert Solution.objects.filter(job=job, kind=SolutionKind.FRONT, objectives={}).count() == 0


def test_seeded_jobs_find_the_same_front(job: SchedulingJob, operator: Any) -> None:
    twin = submit(job.workload, operator)
    fronts = []
    for each in (run_here(job), run_here(twin)):
        rows = Solution.objects.filter(job=each, kind=SolutionKind.FRONT)
        fronts.append([row.objectives for row in rows])
    assert fronts[0] == fronts[1]


def test_cancel_requested_stops_the_solver(job: SchedulingJob) -> None:
    attempt = actions.start_attempt(job.id)
    assert attempt is not None
    actions.request_cancel(job)
    assert solve_job(SchedulingJob.objects.get(pk=job.pk), attempt) == JobStatus.CANCELLED
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    assert not Solution.objects.filter(job=job).exists()


def test_takeover_of_a_job_whose_cancel_was_asked_cancels_it(job: SchedulingJob) -> None:
    actions.start_attempt(job.id)
    actions.request_cancel(job)
    make_stale(job)
    assert run_scheduling_job(str(job.id)) == JobStatus.CANCELLED
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.CANCELLED, 2)


def test_engine_error_fails_the_job_with_the_error(job: SchedulingJob) -> None:
    SchedulingJob.objects.filter(pk=job.pk).update(problem={"tasks": []})
    assert run_scheduling_job(str(job.id)) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("ProblemError: tasks")
    assert actions.retry_job(job).status == JobStatus.QUEUED


def test_a_result_that_cannot_be_stored_fails_the_job_with_the_reason(
    job: SchedulingJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost_database(*args: Any) -> bool:
        raise OperationalError("the database went away")

    monkeypatch.setattr(actions, "record_result", lost_database)
    assert run_scheduling_job(str(job.id)) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "storing the result: the database went away"


def test_duplicate_delivery_gives_up_while_the_owners_heartbeat_is_fresh(
    job: SchedulingJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "JOB_STALE_AFTER", timedelta(seconds=0.2))
    monkeypatch.setattr(tasks, "HEARTBEAT_INTERVAL_S", 0.05)
    monkeypatch.setattr(tasks, "CLAIM_POLL_INTERVAL_S", 0.05)
    actions.start_attempt(job.id)
    assert claim_job(str(job.id)) is None
    assert SchedulingJob.objects.get(pk=job.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_beats_until_the_block_ends(
    operator: Any, fleet: Any, workload: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "HEARTBEAT_INTERVAL_S", 0.05)
    monkeypatch.setattr(run_scheduling_job, "delay", lambda job_id: None)  # no worker here
    job = submit(workload, operator)
    attempt = actions.start_attempt(job.id)
    assert attempt is not None
    started = SchedulingJob.objects.get(pk=job.pk).heartbeat_at
    with Heartbeat(job.id, attempt) as heartbeat:
        time.sleep(0.5)
    assert not heartbeat.thread.is_alive()
    beat = SchedulingJob.objects.get(pk=job.pk).heartbeat_at
    assert started is not None and beat is not None and beat > started
