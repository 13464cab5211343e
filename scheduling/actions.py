"""Every change to scheduling state goes through one of these functions, each one transaction.

Live events are sent with `transaction.on_commit`, so the browser never sees a change that
was rolled back. The functions the Celery task calls (`start_attempt`, `record_*`) are
fenced by the attempt number: they change a job only while it is running under the
caller's attempt, and say whether it still is.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from numbers import Integral, Real
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from controlplane.roles import is_admin
from devices.api.serializers import storable_json_problem
from devices.models import Device
from scheduling import events
from scheduling.engine import FORMAT, TIERS, ProblemError, parse_problem, parse_workload
from scheduling.engine.problem import Task
from scheduling.engine.search import check_algorithm
from scheduling.engine.wfformat import WfFormatError, is_wfformat, workload_from_wfformat
from scheduling.fleet import ModelReferenceError, snapshot_fleet, with_measured_runtimes
from scheduling.models import (
    JOB_STALE_AFTER,
    Decision,
    DecisionStatus,
    JobStatus,
    SchedulingJob,
    Solution,
    SolutionKind,
    Workload,
    WorkloadSource,
)
from scheduling.templates import TemplateError, detach_from_fleet, get_template

log = logging.getLogger(__name__)

MAX_WORKLOAD_TASKS = 5000
# Room left under the upload body limit (TRIAD_MAX_UPLOAD_BYTES) for the multipart envelope,
# so that a file just over the upload limit is answered with an error naming `file`.
_MULTIPART_ROOM_BYTES = 16 * 1024
MAX_ERROR_CHARS = 2000


class SchedulingError(Exception):
    """A request scheduling refuses. `field` names the input at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class SchedulingConflict(SchedulingError):
    """The object's current state forbids the request (cancel a finished job...)."""


class NotAllowed(SchedulingError):
    """The user's role forbids the request."""


def max_upload_bytes() -> int:
    return int(settings.TRIAD_MAX_UPLOAD_BYTES) - _MULTIPART_ROOM_BYTES


# --- workloads --------------------------------------------------------------------------
def create_workload_from_document(
    *, name: str, document: Any, created_by: Any, description: str = ""
) -> Workload:
    """A workload from a `{tasks, edges}` document; errors name `document`."""
    if not isinstance(document, Mapping):
        raise SchedulingError("Must be an object with tasks and edges.", "document")
    workload = _checked_workload(
        {"tasks": document.get("tasks"), "edges": document.get("edges", [])}, "document"
    )
    return _store_workload(
        name=name,
        description=description,
        document=workload,
        source=WorkloadSource.DOCUMENT,
        created_by=created_by,
    )


def create_workload_from_template(
    *,
    name: str,
    template: str,
    parameters: Mapping[str, Any],
    created_by: Any,
    description: str = "",
) -> Workload:
    """A workload built by a template (`scheduling.templates`); errors name `template` or
    `parameters`."""
    try:
        chosen = get_template(template)
    except TemplateError as error:
        raise SchedulingError(error.message, "template") from error
    try:
        values = chosen.read_parameters(parameters)
        document = chosen.build(values)
    except TemplateError as error:
        raise SchedulingError(error.message, "parameters") from error
    return _store_workload(
        name=name,
        description=description or chosen.description,
        document=_checked_workload(document, "parameters"),
        source=WorkloadSource.TEMPLATE,
        created_by=created_by,
        template=chosen.name,
        parameters=values,
    )


def create_workload_from_file(
    *, name: str, file: IO[bytes], created_by: Any, description: str = ""
) -> Workload:
    """A workload from an uploaded JSON file: a problem document (its tasks and edges are
    kept, pins to its own devices become pins to their tiers) or a WfCommons WfFormat
    workflow. Every error names `file` (and, in its message, the task at fault)."""
    document = _read_json_file(file)
    if is_wfformat(document):
        try:
            workload = workload_from_wfformat(document)
        except WfFormatError as error:
            raise SchedulingError(str(error), "file") from error
        source = WorkloadSource.WFFORMAT
    elif isinstance(document, Mapping) and "tasks" in document:
        workload = detach_from_fleet(document)
        source = WorkloadSource.UPLOAD
    else:
        raise SchedulingError(
            "Not a scheduling problem (no tasks) nor a WfFormat workflow.", "file"
        )
    return _store_workload(
        name=name,
        description=description,
        document=_checked_workload(workload, "file"),
        source=source,
        created_by=created_by,
    )


def _read_json_file(file: IO[bytes]) -> Any:
    limit = max_upload_bytes()
    content = file.read(limit + 1)
    if len(content) > limit:
        raise SchedulingError(f"The file is larger than {limit} bytes.", "file")
    try:
        return json.loads(content, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise SchedulingError(f"Not valid JSON: {error}", "file") from error


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _checked_workload(workload: dict[str, Any], field: str) -> dict[str, Any]:
    """The workload if the engine accepts its graph and the database can store it."""
    try:
        tasks, _ = parse_workload(workload)
    except ProblemError as error:
        raise SchedulingError(str(error), field) from error
    if len(tasks) > MAX_WORKLOAD_TASKS:
        raise SchedulingError(f"tasks: at most {MAX_WORKLOAD_TASKS} tasks per workload.", field)
    _check_device_pins(tasks, field)
    problem = storable_json_problem(workload)
    if problem:
        raise SchedulingError(problem, field)
    return workload


def _check_device_pins(tasks: Sequence[Task], field: str) -> None:
    """A pin that is not a tier must name an enrolled device (of any status: it may be
    offline now and online when a job runs)."""
    pins = {t.pinned_to for t in tasks if t.pinned_to is not None and t.pinned_to not in TIERS}
    enrolled = Device.objects.filter(pk__in=_uuids(pins)).values_list("pk", flat=True)
    known = {str(pk) for pk in enrolled}
    for i, task in enumerate(tasks):
        if task.pinned_to in pins - known:
            raise SchedulingError(
                f"tasks[{i}].pinned_to: task {task.id!r} is pinned to {task.pinned_to!r}, "
                "which is neither a tier (cloud, edge, end) nor an enrolled device.",
                field,
            )


def _uuids(values: set[str]) -> list[uuid.UUID]:
    found = []
    for value in values:
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            continue
    return found


@transaction.atomic
def _store_workload(
    *,
    name: str,
    description: str,
    document: dict[str, Any],
    source: str,
    created_by: Any,
    template: str = "",
    parameters: Mapping[str, Any] | None = None,
) -> Workload:
    return Workload.objects.create(
        name=name,
        description=description,
        source=source,
        template=template,
        parameters=dict(parameters or {}),
        document=document,
        task_count=len(document["tasks"]),
        edge_count=len(document["edges"]),
        created_by=_user(created_by),
    )


@transaction.atomic
def delete_workload(workload: Workload) -> None:
    """Delete a workload no job uses: jobs keep their workload for the record."""
    jobs = SchedulingJob.objects.filter(workload=workload).count()
    if jobs:
        raise SchedulingConflict(f"{jobs} job(s) use this workload; it cannot be deleted.")
    workload.delete()


# --- jobs -------------------------------------------------------------------------------
@transaction.atomic
def submit_job(
    *,
    workload: Workload,
    objectives: list[str],
    algorithm: str,
    generations: int,
    population: int,
    seed: int,
    created_by: Any,
) -> SchedulingJob:
    """Freeze the problem (workload, online fleet, objectives), store a queued job and
    enqueue its task on commit. A problem the engine refuses stores nothing."""
    try:
        check_algorithm(algorithm, len(objectives))
    except ValueError as error:
        raise SchedulingError(str(error), "algorithm") from error
    problem = build_problem(workload, objectives)
    job = SchedulingJob.objects.create(
        workload=workload,
        objectives=list(objectives),
        algorithm=algorithm,
        generations=generations,
        population=population,
        seed=seed,
        problem=problem,
        fleet_size=len(problem["devices"]),
        created_by=_user(created_by),
    )
    _announce_and_enqueue(job)
    return job


def build_problem(workload: Workload, objectives: list[str]) -> dict[str, Any]:
    """The problem document of `workload` on the online fleet, validated by the engine."""
    fleet = snapshot_fleet()
    try:
        tasks = with_measured_runtimes(workload.document["tasks"], fleet["devices"])
    except ModelReferenceError as error:
        raise SchedulingError(str(error), "workload") from error
    problem = {
        "format": FORMAT,
        "tasks": tasks,
        "edges": workload.document["edges"],
        **fleet,
        "objectives": list(objectives),
    }
    try:
        parse_problem(problem)
    except ProblemError as error:
        raise SchedulingError(str(error), _request_field(error.field)) from error
    return problem


def _request_field(path: str | None) -> str | None:
    """The request field a problem path belongs to: the workload, the fleet or objectives."""
    root = (path or "").split("[", 1)[0].split(".", 1)[0]
    return {
        "tasks": "workload",
        "edges": "workload",
        "devices": "fleet",
        "links": "fleet",
        "objectives": "objectives",
    }.get(root)


def _announce_and_enqueue(job: SchedulingJob) -> None:
    job_id = str(job.id)
    transaction.on_commit(lambda: events.publish_job_status(job))
    transaction.on_commit(lambda: _enqueue(job_id))


def _enqueue(job_id: str) -> None:
    """Send the job's task. A job whose task could not be sent (the broker is down) fails
    at once, so that it can be retried, instead of staying queued for ever."""
    # Imported here: the task module imports this one.
    from scheduling.tasks import run_scheduling_job

    try:
        run_scheduling_job.delay(job_id)
    except Exception as error:
        log.exception("could not queue scheduling job %s", job_id)
        _fail_unsent(job_id, f"Could not queue the job: {type(error).__name__}: {error}")


@transaction.atomic
def _fail_unsent(job_id: str, error: str) -> None:
    now = timezone.now()
    unsent = SchedulingJob.objects.filter(pk=job_id, status=JobStatus.QUEUED)
    if unsent.update(status=JobStatus.FAILED, error=error[:MAX_ERROR_CHARS], finished_at=now):
        job = SchedulingJob.objects.get(pk=job_id)
        transaction.on_commit(lambda: events.publish_job_status(job))


@transaction.atomic
def request_cancel(job: SchedulingJob) -> SchedulingJob:
    """Cancel a queued job, or a running one whose worker stopped beating, at once; ask a
    running one to stop at its next generation. (A stale worker that comes back is fenced
    off by its attempt number.)"""
    job = SchedulingJob.objects.select_for_update().get(pk=job.pk)
    if job.status == JobStatus.QUEUED or job.is_stale():
        job.status = JobStatus.CANCELLED
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "finished_at"])
    elif job.status == JobStatus.RUNNING:
        if job.cancel_requested:
            return job
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
    else:
        raise SchedulingConflict(f"The job has {job.status}; there is nothing to cancel.")
    transaction.on_commit(lambda: events.publish_job_status(job))
    return job


@transaction.atomic
def retry_job(job: SchedulingJob) -> SchedulingJob:
    """Queue a failed or cancelled job again, or one whose worker stopped beating.

    It solves the same frozen problem. Claimed with a conditional UPDATE, so of two retries
    at once only one enqueues.
    """
    retryable = Q(status__in=[JobStatus.FAILED, JobStatus.CANCELLED]) | _stale_running(
        timezone.now()
    )
    claimed = (
        SchedulingJob.objects.filter(pk=job.pk)
        .filter(retryable)
        .update(
            status=JobStatus.QUEUED,
            cancel_requested=False,
            error="",
            started_at=None,
            finished_at=None,
            **_CLEARED_RUN,
        )
    )
    if not claimed:
        status = SchedulingJob.objects.values_list("status", flat=True).get(pk=job.pk)
        raise SchedulingConflict(
            f"Only failed, cancelled or stalled jobs can be retried; this one is {status}."
        )
    job = SchedulingJob.objects.get(pk=job.pk)
    _announce_and_enqueue(job)
    return job


# What a new attempt starts without.
_CLEARED_RUN: dict[str, Any] = {
    "progress": None,
    "history": [],
    "hypervolume": None,
    "lower_bounds": None,
    "front_dominates_baselines": None,
    "wall_time_s": None,
}


def _stale_running(now: datetime) -> Q:
    cutoff = now - JOB_STALE_AFTER
    return Q(status=JobStatus.RUNNING) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))


# --- what the Celery task records -------------------------------------------------------
@transaction.atomic
def start_attempt(job_id: uuid.UUID | str) -> int | None:
    """Claim a queued job, or take over a running one whose worker stopped beating.

    Returns the new attempt number, or None when the job is not (or no longer) there to
    claim. A conditional UPDATE: of two workers at once, one wins.
    """
    now = timezone.now()
    start = {
        "status": JobStatus.RUNNING,
        "attempts": F("attempts") + 1,
        "started_at": now,
        "heartbeat_at": now,
        **_CLEARED_RUN,
    }
    claimable = Q(status=JobStatus.QUEUED) | _stale_running(now)
    if not SchedulingJob.objects.filter(pk=job_id).filter(claimable).update(**start):
        return None
    job = SchedulingJob.objects.get(pk=job_id)
    transaction.on_commit(lambda: events.publish_job_status(job))
    return job.attempts


def _attempt(job_id: uuid.UUID | str, attempt: int) -> QuerySet[SchedulingJob]:
    """The job, if it is still running under this attempt."""
    return SchedulingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt)


@transaction.atomic
def beat(job_id: uuid.UUID | str, attempt: int) -> bool:
    """Record that the attempt's worker is alive; False if the job is no longer its."""
    return bool(_attempt(job_id, attempt).update(heartbeat_at=timezone.now()))


@transaction.atomic
def record_progress(
    job_id: uuid.UUID | str, attempt: int, history: list[dict[str, Any]], new: int
) -> bool:
    """Store the history so far; announce its last `new` entries. False if no longer ours."""
    stored = _attempt(job_id, attempt).update(
        progress=_json_safe(history[-1]), history=_json_safe(history), heartbeat_at=timezone.now()
    )
    if stored:
        entries = _json_safe(history[len(history) - new :])
        transaction.on_commit(lambda: events.publish_job_progress(job_id, entries))
    return bool(stored)


@transaction.atomic
def record_result(job_id: uuid.UUID | str, attempt: int, result: Mapping[str, Any]) -> bool:
    """Store the front and the baselines (replacing an earlier attempt's) and succeed."""
    job = _attempt(job_id, attempt).select_for_update().first()
    if job is None:
        return False
    result = _json_safe(result)
    Solution.objects.filter(job=job).delete()
    Solution.objects.bulk_create(_solutions(job, result))
    history = result.get("history") or job.history
    job.status = JobStatus.SUCCEEDED
    job.finished_at = job.heartbeat_at = timezone.now()
    job.history = history
    job.progress = history[-1] if history else job.progress
    job.hypervolume = result["hypervolume"]
    job.lower_bounds = result["lower_bounds"]
    job.front_dominates_baselines = result["front_dominates_baselines"]
    job.wall_time_s = result["wall_time_s"]
    job.save(update_fields=_RESULT_FIELDS)
    transaction.on_commit(lambda: events.publish_job_status(job))
    return True


_RESULT_FIELDS = [
    "status",
    "finished_at",
    "heartbeat_at",
    "history",
    "progress",
    "hypervolume",
    "lower_bounds",
    "front_dominates_baselines",
    "wall_time_s",
]


def _solutions(job: SchedulingJob, result: Mapping[str, Any]) -> Iterator[Solution]:
    knee = result.get("knee")
    for index, entry in enumerate(result["front"]):
        yield _solution(job, SolutionKind.FRONT, index, entry, is_knee=index == knee)
    baseline_hypervolumes = result["hypervolume"].get("baselines", {})
    for index, (name, entry) in enumerate(result["baselines"].items()):
        hypervolume = baseline_hypervolumes.get(name)
        yield _solution(
            job, SolutionKind.BASELINE, index, entry, name=name, hypervolume=hypervolume
        )


def _solution(
    job: SchedulingJob, kind: str, index: int, entry: Mapping[str, Any], **extra: Any
) -> Solution:
    return Solution(
        job=job,
        kind=kind,
        index=index,
        objectives=entry["objectives"],
        assignment=entry["assignment"],
        timeline=entry["timeline"],
        feasible=entry.get("feasible", True),
        deadline_violation_s=entry.get("deadline_violation_s") or 0.0,
        **extra,
    )


@transaction.atomic
def record_failure(job_id: uuid.UUID | str, attempt: int, error: str) -> bool:
    return _finish(job_id, attempt, JobStatus.FAILED, error=error[:MAX_ERROR_CHARS])


@transaction.atomic
def record_cancelled(job_id: uuid.UUID | str, attempt: int) -> bool:
    return _finish(job_id, attempt, JobStatus.CANCELLED)


def _finish(job_id: uuid.UUID | str, attempt: int, status: str, error: str = "") -> bool:
    now = timezone.now()
    if not _attempt(job_id, attempt).update(
        status=status, error=error, finished_at=now, heartbeat_at=now
    ):
        return False
    job = SchedulingJob.objects.get(pk=job_id)
    transaction.on_commit(lambda: events.publish_job_status(job))
    return True


def _json_safe(value: Any) -> Any:
    """`value` as PostgreSQL's jsonb takes it: non-finite numbers (an empty front's
    hypervolume, an unbounded ratio) become null, numpy scalars plain numbers."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


# --- decisions --------------------------------------------------------------------------
@transaction.atomic
def propose_decision(*, solution: Solution, proposed_by: Any, comment: str = "") -> Decision:
    """Propose a solution of a finished job for approval."""
    job = SchedulingJob.objects.select_for_update().get(pk=solution.job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise SchedulingConflict(f"The job has not succeeded (it is {job.status}).")
    if not solution.feasible:
        raise SchedulingError("This solution misses a deadline; it cannot be deployed.", "solution")
    _refuse_if_approved(job)
    decision = Decision.objects.create(
        job=job, solution=solution, comment=comment, proposed_by=_user(proposed_by)
    )
    transaction.on_commit(lambda: events.publish_decision(decision))
    return decision


@transaction.atomic
def approve_decision(decision: Decision, *, reviewed_by: Any, comment: str = "") -> Decision:
    """Approve a proposed decision (admins only): the job's one approved decision."""
    decision = _reviewable(decision, reviewed_by)
    _refuse_if_approved(decision.job)
    try:
        with transaction.atomic():
            return _review(decision, DecisionStatus.APPROVED, reviewed_by, comment)
    except IntegrityError as error:  # an approval that raced ours past the check above
        raise SchedulingConflict("This job already has an approved decision.") from error


@transaction.atomic
def reject_decision(decision: Decision, *, reviewed_by: Any, comment: str) -> Decision:
    """Reject a proposed decision (admins only), saying why."""
    if not comment.strip():
        raise SchedulingError("Say why the decision is rejected.", "comment")
    decision = _reviewable(decision, reviewed_by)
    return _review(decision, DecisionStatus.REJECTED, reviewed_by, comment)


def _reviewable(decision: Decision, reviewer: Any) -> Decision:
    if not is_admin(reviewer):
        raise NotAllowed("Only admins review decisions.")
    # The job row is locked first, as in propose_decision, so reviews of one job queue up.
    SchedulingJob.objects.select_for_update().get(pk=decision.job_id)
    decision = Decision.objects.select_for_update().select_related("job").get(pk=decision.pk)
    if decision.status != DecisionStatus.PROPOSED:
        raise SchedulingConflict(f"The decision was {decision.status}; it cannot change.")
    return decision


def _refuse_if_approved(job: SchedulingJob) -> None:
    if Decision.objects.filter(job=job, status=DecisionStatus.APPROVED).exists():
        raise SchedulingConflict("This job already has an approved decision.")


def _review(decision: Decision, status: str, reviewer: Any, comment: str) -> Decision:
    decision.status = status
    decision.reviewed_by = reviewer
    decision.reviewed_at = timezone.now()
    decision.review_comment = comment
    decision.save()
    transaction.on_commit(lambda: events.publish_decision(decision))
    return decision


def _user(user: Any) -> Any:
    return user if user is not None and user.is_authenticated else None
