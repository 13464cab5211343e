"""Celery tasks of the model hub. They call actions; they never write models themselves.

`run_compression_job` runs on a queue of its own, `compression` (CELERY_TASK_ROUTES), so
that compression workers can be scaled apart from the rest. It is idempotent and safe to
deliver twice: it claims the job with a conditional UPDATE (a new attempt number), and every
write it makes is fenced by that attempt. With `acks_late` and `reject_on_worker_lost`, a
job whose worker process dies is delivered again; the new delivery waits until the dead
attempt's heartbeat is stale, then takes the job over and runs it from the start.

The engine works in a scratch folder on copies of the model and data files: the registered
model's file is only ever read.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from celery import shared_task
from django.core.files.storage import default_storage

from controlplane import jobs
from models_hub import actions
from models_hub.models import JOB_STALE_AFTER, CompressionJob, CompressionJobStatus

log = logging.getLogger(__name__)

QUEUE = "compression"
HEARTBEAT_INTERVAL_S = 2.0
# Progress is stored and announced at most this often; the last of it always is.
PROGRESS_INTERVAL_S = 0.5
# How often the engine's `should_stop` asks the database (cancelled, or taken over).
STOP_CHECK_INTERVAL_S = 1.0
CLAIM_POLL_INTERVAL_S = 1.0
# The engine's loggers whose records go into the job's log.
ENGINE_LOGGER = "models_hub.compression"


@shared_task(acks_late=True, ignore_result=True)
def run_compression_job(job_id: str) -> str:
    """Run a queued job's recipe and store its variants; return what became of it."""
    attempt = claim_job(job_id)
    if attempt is None:
        return "not claimed"
    job = CompressionJob.objects.select_related(
        "model", "calibration", "evaluation", "training"
    ).get(pk=job_id)
    if job.cancel_requested:  # asked while the dead attempt ran
        actions.record_cancelled(job.id, attempt)
        return CompressionJobStatus.CANCELLED.value
    with Heartbeat(job.id, attempt):
        return compress_job(job, attempt)


SCRATCH_PREFIX = "triad-compression-"


def _remove_dead_attempts_scratch(job_id: uuid.UUID) -> None:
    """A killed attempt never cleans up its scratch folder (copies of the model and data);
    the attempt that took the job over does, where it runs on the same machine."""
    for leftover in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{job_id}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def claim_job(job_id: str) -> int | None:
    """Claim the job, or take it over once its dead worker's heartbeat is stale."""
    return jobs.claim_job(
        job_id,
        actions.start_attempt,
        CompressionJob,
        CompressionJobStatus.RUNNING,
        stale_after=JOB_STALE_AFTER,
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        poll_interval_s=CLAIM_POLL_INTERVAL_S,
    )


def compress_job(job: CompressionJob, attempt: int) -> str:
    """Run the engine on copies of the job's files; store its variants, or why it stopped."""
    from models_hub.compression import (
        CompressionCancelled,
        CompressionError,
        compress,
        load_data,
        parse_recipe,
    )

    progress = ProgressRecorder(job.id, attempt)
    _remove_dead_attempts_scratch(job.id)
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{job.id}-") as scratch:
        folder = Path(scratch)
        try:
            with progress.capturing_engine_log():
                progress.line(f"{job.recipe} on {job.model} ({job.model.framework})")
                model_path = _copy_in(job.model.file.name, folder, job.model.sha256)
                calibration = load_data(_copy_in(job.calibration.file.name, folder), "calibration")
                evaluation = load_data(_copy_in(job.evaluation.file.name, folder), "evaluation")
                training = None
                if job.training is not None:
                    training = load_data(_copy_in(job.training.file.name, folder), "training")
                report = compress(
                    model_path,
                    parse_recipe(job.recipe),
                    calibration,
                    evaluation,
                    folder / "out",
                    actions.job_options(job),
                    train_data=training,
                    on_progress=progress.add,
                    should_stop=StopCheck(job.id, attempt),
                )
        except CompressionCancelled:
            progress.flush()
            actions.record_cancelled(job.id, attempt)
            return CompressionJobStatus.CANCELLED.value
        except Exception as error:
            if not isinstance(error, CompressionError):
                log.exception("compression job %s failed", job.id)
            _flush_quietly(progress)
            actions.record_failure(job.id, attempt, _describe(error))
            return CompressionJobStatus.FAILED.value
        try:
            progress.flush()
            stored = actions.record_result(job.id, attempt, report, folder / "out")
        except Exception as error:
            # Storing failed (the database or the storage went away, say): fail the job
            # with the reason rather than leave it running until it looks stale.
            log.exception("compression job %s: storing its result failed", job.id)
            actions.record_failure(job.id, attempt, f"storing the result: {error}")
            return CompressionJobStatus.FAILED.value
    return CompressionJobStatus.SUCCEEDED.value if stored else "not ours any more"


def _describe(error: Exception) -> str:
    from models_hub.compression import CompressionError

    if isinstance(error, CompressionError):
        return str(error)  # "<field>: <message>", the engine's own words
    return f"{type(error).__name__}: {error}"


def _flush_quietly(progress: ProgressRecorder) -> None:
    try:
        progress.flush()
    except Exception:  # the failure itself is what must be recorded
        log.exception("could not store the last progress of compression job %s", progress.job_id)


def _copy_in(name: str, folder: Path, sha256: str | None = None) -> Path:
    """A stored file copied into a folder of its own in the scratch folder (the storage may
    be remote later); a model's copy must still have the digest it was registered with."""
    target = folder / "inputs" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with default_storage.open(name, "rb") as source, target.open("wb") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
    if sha256 is not None and actions.file_sha256(target) != sha256:
        raise RuntimeError(f"the stored file {name} no longer has its registered sha256")
    return target


class ProgressRecorder:
    """Collects the engine's progress and log lines; stores them at most every
    PROGRESS_INTERVAL_S, so a chatty engine does not turn into a flood of writes."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.fraction = 0.0
        self.stage = ""
        self.lines: list[str] = []
        self.changed = False
        self.written_at = float("-inf")
        self.lock = threading.Lock()  # engine log records may come from other threads

    def add(self, fraction: float, message: str) -> None:
        """The engine's `on_progress`."""
        with self.lock:
            self.fraction, self.stage, self.changed = fraction, message, True
            self.lines.append(f"{fraction:4.0%} {message}")
        if time.monotonic() - self.written_at >= PROGRESS_INTERVAL_S:
            self.flush()

    def line(self, text: str) -> None:
        with self.lock:
            self.lines.append(text)
            self.changed = True

    def flush(self) -> None:
        with self.lock:
            if not self.changed:
                return
            lines, self.lines, self.changed = self.lines, [], False
            fraction, stage = self.fraction, self.stage
        actions.record_progress(self.job_id, self.attempt, fraction, stage, lines)
        self.written_at = time.monotonic()

    @contextmanager
    def capturing_engine_log(self) -> Iterator[None]:
        """The engine's log records (warnings, skipped steps) go into the job's log."""
        handler = _LineHandler(self)
        engine = logging.getLogger(ENGINE_LOGGER)
        engine.addHandler(handler)
        try:
            yield
        finally:
            engine.removeHandler(handler)


class _LineHandler(logging.Handler):
    def __init__(self, recorder: ProgressRecorder) -> None:
        super().__init__(logging.INFO)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.recorder.line(f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:
            self.handleError(record)


class StopCheck(jobs.StopCheck):
    """The engine's `should_stop` (cancelled, or taken over), asked at most every
    STOP_CHECK_INTERVAL_S."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        super().__init__(
            CompressionJob, CompressionJobStatus.RUNNING, job_id, attempt, STOP_CHECK_INTERVAL_S
        )


class Heartbeat(jobs.Heartbeat):
    """Beats every HEARTBEAT_INTERVAL_S while the engine runs (one epoch or export can take
    longer than the stale period)."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        super().__init__(
            job_id, attempt, actions.beat, HEARTBEAT_INTERVAL_S, log, "compression job"
        )
