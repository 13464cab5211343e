"""What every Celery task that runs a job shares: claiming the job, beating for it, and
asking whether to stop.

A job row (`SchedulingJob`, `CompressionJob`) has a status, an attempt counter, a heartbeat
and a cancel flag; its app's actions claim it with a conditional UPDATE (`start_attempt`
returns a new attempt number, or None) and beat for an attempt (`beat`). With `acks_late`
and `reject_on_worker_lost` a job whose worker died is delivered again, and these pieces
let that delivery take it over safely. The app's tasks module passes its own intervals
on every call, so that they stay its constants (and its tests can change them).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.db import connections
from django.db.models import Model


def claim_job(
    job_id: str,
    start_attempt: Callable[[str], int | None],
    model: type[Model],
    running: str,
    *,
    stale_after: timedelta,
    heartbeat_interval_s: float,
    poll_interval_s: float,
) -> int | None:
    """Claim the job; if it is running, wait for its worker to be presumed dead.

    A delivery after a worker died finds the job running, its heartbeat a few seconds
    old; it takes over once the heartbeat is stale. A duplicate delivery while a live
    worker runs the job gives up after one stale period.
    """
    patience = time.monotonic() + stale_after.total_seconds() + 2 * heartbeat_interval_s
    while True:
        attempt = start_attempt(job_id)
        if attempt is not None:
            return attempt
        status = model._default_manager.filter(pk=job_id).values_list("status", flat=True).first()
        if status != running or time.monotonic() > patience:
            return None
        time.sleep(poll_interval_s)


class StopCheck:
    """An engine's `should_stop`: true once the job is cancelled or no longer this
    attempt's. Asks the database at most every `interval_s`, however often it is called."""

    def __init__(
        self, model: type[Model], running: str, job_id: uuid.UUID, attempt: int, interval_s: float
    ) -> None:
        self.model = model
        self.running = running
        self.job_id = job_id
        self.attempt = attempt
        self.interval_s = interval_s
        self.checked_at = float("-inf")
        self.stop = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.stop and now - self.checked_at >= self.interval_s:
            self.checked_at = now
            self.stop = not self.model._default_manager.filter(
                pk=self.job_id,
                status=self.running,
                attempts=self.attempt,
                cancel_requested=False,
            ).exists()
        return self.stop


class Heartbeat:
    """Beats for the attempt from a thread of its own while the block runs, so that the
    job looks alive however long the engine spends in one step (compiling, an epoch, an
    export) without calling back."""

    def __init__(
        self,
        job_id: uuid.UUID,
        attempt: int,
        beat: Callable[[uuid.UUID, int], bool],
        interval_s: float,
        log: logging.Logger,
        kind: str,
    ) -> None:
        """`beat` is the app's action (False once the job is not the attempt's); `log` and
        `kind` ("scheduling job") name the job when a beat fails."""
        self.job_id = job_id
        self.attempt = attempt
        self.beat = beat
        self.interval_s = interval_s
        self.log = log
        self.kind = kind
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
            while not self.stopped.wait(self.interval_s):
                if not self._beat():
                    return  # the job is no longer this attempt's
        finally:
            connections.close_all()  # this thread's connections only

    def _beat(self) -> bool:
        try:
            return self.beat(self.job_id, self.attempt)
        except Exception:  # a database hiccup: beat again next time
            self.log.exception("heartbeat of %s %s failed", self.kind, self.job_id)
            return True
