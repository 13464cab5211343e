"""Celery tasks of scheduling. They call actions; they never write models themselves.

`run_scheduling_job` is idempotent and safe to deliver twice: it claims the job with a
conditional UPDATE (a new attempt number), and every write it makes is fenced by that
attempt. With `acks_late` and `reject_on_worker_lost`, a job whose worker process dies is
delivered again; the new delivery waits until the dead attempt's heartbeat is stale, then
takes the job over and solves it from the start.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from celery import shared_task
from django.db import connections

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
    """Claim the job; if it is running, wait for its worker to be presumed dead.

    A delivery after a worker died finds the job running, its heartbeat a few seconds
    old; it takes over once the heartbeat is stale. A duplicate delivery while a live
    worker runs the job gives up after one stale period.
    """
    patience = time.monotonic() + JOB_STALE_AFTER.total_seconds() + 2 * HEARTBEAT_INTERVAL_S
    while True:
        attempt = actions.start_attempt(job_id)
        if attempt is not None:
            return attempt
        status = SchedulingJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
        if status != JobStatus.RUNNING or time.monotonic() > patience:
            return None
        time.sleep(CLAIM_POLL_INTERVAL_S)


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


class StopCheck:
    """The solver's `should_stop`: true once the job is cancelled or no longer this
    attempt's. Asks the database at most every STOP_CHECK_INTERVAL_S."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.checked_at = float("-inf")
        self.stop = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.stop and now - self.checked_at >= STOP_CHECK_INTERVAL_S:
            self.checked_at = now
            self.stop = not SchedulingJob.objects.filter(
                pk=self.job_id,
                status=JobStatus.RUNNING,
                attempts=self.attempt,
                cancel_requested=False,
            ).exists()
        return self.stop


class Heartbeat:
    """Beats for the attempt from a thread of its own while the block runs, so that the
    job looks alive however long the engine spends between generations (compiling,
    computing the baselines of a large problem)."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_INTERVAL_S):
                if not self._beat():
                    return  # the job is no longer this attempt's
        finally:
            connections.close_all()  # this thread's connections only

    def _beat(self) -> bool:
        try:
            return actions.beat(self.job_id, self.attempt)
        except Exception:  # a database hiccup: beat again next time
            log.exception("heartbeat of scheduling job %s failed", self.job_id)
            return True
