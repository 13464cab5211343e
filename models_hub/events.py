"""Live events of compression jobs, sent through the channel layer after commit.

Groups and messages (the `type` is the consumer's handler name, dots for underscores):

- `compression-job-<uuid>`, a job's page:
  `{"type": "job.status", "job": <job summary>}` on every status change (queued, running,
  cancel asked, succeeded, failed, cancelled), and
  `{"type": "job.progress", "job": "<uuid>", "progress": <0..1>, "stage": "<what the
  worker does>", "lines": ["<new log line>", ...]}` at most a few times a second while it
  runs; `lines` are the log lines added since the previous progress message (the whole
  log is the job's `log` in the API).
- `compression-jobs`, the hub's job list: every `job.status`.

A job summary (`job_summary`) is `{id, model, model_name, model_version, recipe, status,
progress, stage, error, attempts, cancel_requested, variants, created_at, started_at,
finished_at}`; `variants` counts the stored variants (0 until the job succeeds). Times
are ISO 8601. After a `succeeded` status the page reads the variants from the API
(`/api/v1/models/jobs/<uuid>/variants/`).

Best effort, like `scheduling.events`: a channel layer that is down must not turn a
stored change into an error for whoever made it.
"""

from __future__ import annotations

from typing import Any

from controlplane.events import send_to_groups
from models_hub.models import CompressionJob

JOBS_GROUP = "compression-jobs"
JOB_STATUS_EVENT = "job.status"
JOB_PROGRESS_EVENT = "job.progress"


def job_group(job_id: object) -> str:
    return f"compression-job-{job_id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_summary(job: CompressionJob) -> dict[str, Any]:
    """What the browser shows of a job, live."""
    return {
        "id": str(job.id),
        "model": str(job.model_id),
        "model_name": job.model.name,
        "model_version": job.model.version,
        "recipe": job.recipe,
        "status": job.status,
        "progress": job.progress,
        "stage": job.stage,
        "error": job.error,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "variants": job.variants.count(),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def publish_job_status(job: CompressionJob) -> None:
    message = {"type": JOB_STATUS_EVENT, "job": job_summary(job)}
    send_to_groups([job_group(job.id), JOBS_GROUP], message)


def publish_job_progress(job_id: object, progress: float, stage: str, lines: list[str]) -> None:
    message = {
        "type": JOB_PROGRESS_EVENT,
        "job": str(job_id),
        "progress": progress,
        "stage": stage,
        "lines": lines,
    }
    send_to_groups([job_group(job_id)], message)
