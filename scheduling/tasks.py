"""Celery tasks of scheduling. They call actions; they never write models themselves.

`run_scheduling_job` is idempotent and safe to deliver twice: it claims the job with a
conditional UPDATE (a new attempt number), and every write it makes is fenced by that
attempt. With `acks_late` and `reject_on_worker_lost`, a job whose worker process dies is
delivered again; the new delivery waits until the dead attempt's heartbeat is stale, then
takes the job over and solves it from the start.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery import shared_task

from controlplane import jobs
from scheduling import actions
from scheduling.engine import SolveCancelled, SolveOptions, parse_problem, solve
from scheduling.models import JOB_STALE_AFTER, JobStatus, SchedulingJob

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
# Progress is stored and announced at most this often; the last generation always is.
PROGRESS_INTERVAL_S = 0.25
# How often the solver asks the database whether to stop (cancelled, or taken over).
STOP_CHECK_INTERVAL_S = 0.5
CLAIM_POLL_INTERVAL_S = 1.0


@shared_task(acks_late=True, ignore_result=True)
def run_scheduling_job(job_id: str) -> str:
    """Solve a queued job and store its solutions; return what became of it."""
    attempt = claim_job(job_id)
    if attempt is None:
        return "not claimed"
    job = SchedulingJob.objects.get(pk=job_id)
    if job.cancel_requested:  # asked while the dead attempt ran
        actions.record_cancelled(job.id, attempt)
        return JobStatus.CANCELLED.value
    with Heartbeat(job.id, attempt):
        return solve_job(job, attempt)


def claim_job(job_id: str) -> int | None:
    """Claim the job, or take it over once its dead worker's heartbeat is stale."""
    return jobs.claim_job(
        job_id,
        actions.start_attempt,
        SchedulingJob,
        JobStatus.RUNNING,
        stale_after=JOB_STALE_AFTER,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        poll_interval_s=CLAIM_POLL_INTERVAL_S,
    )


def solve_job(job: SchedulingJob, attempt: int) -> str:
    progress = ProgressRecorder(job.id, attempt)
    options = SolveOptions(
        algorithm=job.algorithm,
        generations=job.generations,
        population=job.population,
        seed=job.seed,
    )
    try:
        result = solve(
            parse_problem(job.problem),
            options,
            on_generation=progress.add,
            should_stop=StopCheck(job.id, attempt),
        )
    except SolveCancelled:
        progress.flush()
        actions.record_cancelled(job.id, attempt)
        return JobStatus.CANCELLED.value
    except Exception as error:
        log.exception("scheduling job %s failed", job.id)
        actions.record_failure(job.id, attempt, f"{type(error).__name__}: {error}")
        return JobStatus.FAILED.value
    try:
        progress.flush()
        actions.record_result(job.id, attempt, result)
    except Exception as error:
        # Storing failed (the database went away, say): fail the job with the reason
        # rather than leave it running until it looks stale.
        log.exception("scheduling job %s: storing its result failed", job.id)
        actions.record_failure(job.id, attempt, f"storing the result: {error}")
        return JobStatus.FAILED.value
    return JobStatus.SUCCEEDED.value


class ProgressRecorder:
    """Collects the engine's per-generation entries; stores them at most every
    PROGRESS_INTERVAL_S, so a fast solver does not turn into a flood of writes."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.history: list[dict[str, Any]] = []
        self.unsent = 0
        self.written_at = float("-inf")

    def add(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        self.unsent += 1
        if time.monotonic() - self.written_at >= PROGRESS_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self.unsent:
            actions.record_progress(self.job_id, self.attempt, self.history, self.unsent)
            self.unsent = 0
            self.written_at = time.monotonic()


class StopCheck(jobs.StopCheck):
    """The solver's `should_stop` (cancelled, or taken over), asked at most every
    STOP_CHECK_INTERVAL_S."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        super().__init__(SchedulingJob, JobStatus.RUNNING, job_id, attempt, STOP_CHECK_INTERVAL_S)


class Heartbeat(jobs.Heartbeat):
    """Beats every HEARTBEAT_INTERVAL_S while the solver runs (a large problem can spend
    longer than the stale period compiling or computing its baselines)."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        super().__init__(job_id, attempt, actions.beat, HEARTBEAT_INTERVAL_S, log, "scheduling job")
