"""Live events for the browser, sent through the channel layer after commit.

Groups and messages (the `type` is the consumer's handler name, dots for underscores):

- `scheduling-job-<uuid>`, a job's page:
  `{"type": "job.status", "job": <job summary>}` on every status change, and
  `{"type": "job.progress", "job": "<uuid>", "progress": <entry>, "entries": [<entry>, ...]}`
  with the generations finished since the previous progress message (at most a few a
  second); an entry is `{"generation", "evaluations", "hypervolume", "best": {objective:
  value}}`. Decisions on the job's solutions come here too (`decision.update`, below).
- `scheduling-jobs`, the job list: every `job.status`.
- `scheduling-decisions`, the review queue: `{"type": "decision.update", "decision":
  <decision summary>}` on every proposal, approval and rejection.

Best effort, like `devices.events`: a channel layer that is down must not turn a stored
change into an error for whoever made it.
"""

from __future__ import annotations

from typing import Any

from controlplane.events import send_to_groups
from scheduling.models import Decision, SchedulingJob

JOBS_GROUP = "scheduling-jobs"
DECISIONS_GROUP = "scheduling-decisions"
JOB_STATUS_EVENT = "job.status"
JOB_PROGRESS_EVENT = "job.progress"
DECISION_EVENT = "decision.update"


def job_group(job_id: object) -> str:
    return f"scheduling-job-{job_id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_summary(job: SchedulingJob) -> dict[str, Any]:
    """What the browser shows of a job, live."""
    return {
        "id": str(job.id),
        "workload": str(job.workload_id),
        "status": job.status,
        "objectives": job.objectives,
        "algorithm": job.algorithm,
        "generations": job.generations,
        "population": job.population,
        "fleet_size": job.fleet_size,
        "progress": job.progress,
        "error": job.error,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "hypervolume": job.hypervolume,
        "front_dominates_baselines": job.front_dominates_baselines,
        "wall_time_s": job.wall_time_s,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def decision_summary(decision: Decision) -> dict[str, Any]:
    return {
        "id": str(decision.id),
        "job": str(decision.job_id),
        "solution": str(decision.solution_id),
        "status": decision.status,
        "comment": decision.comment,
        "proposed_by": _username(decision.proposed_by),
        "proposed_at": _iso(decision.proposed_at),
        "review_comment": decision.review_comment,
        "reviewed_by": _username(decision.reviewed_by),
        "reviewed_at": _iso(decision.reviewed_at),
    }


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def publish_job_status(job: SchedulingJob) -> None:
    message = {"type": JOB_STATUS_EVENT, "job": job_summary(job)}
    send_to_groups([job_group(job.id), JOBS_GROUP], message)


def publish_job_progress(job_id: object, entries: list[dict[str, Any]]) -> None:
    if not entries:
        return
    message = {
        "type": JOB_PROGRESS_EVENT,
        "job": str(job_id),
        "progress": entries[-1],
        "entries": entries,
    }
    send_to_groups([job_group(job_id)], message)


def publish_decision(decision: Decision) -> None:
    message = {"type": DECISION_EVENT, "decision": decision_summary(decision)}
    send_to_groups([DECISIONS_GROUP, job_group(decision.job_id)], message)
