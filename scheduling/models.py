"""Scheduling: task graphs (workloads), optimisation jobs on the live fleet, their solutions,
and the decisions admins take on them.

Every write goes through `scheduling.actions`; the models only say what is stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# A running job whose worker has not written its heartbeat for this long is presumed dead:
# a re-delivered task may take it over and operators may retry it. Workers beat every
# `scheduling.tasks.HEARTBEAT_INTERVAL_S`, from a thread of their own, whatever the engine does.
JOB_STALE_AFTER = timedelta(seconds=10)


class WorkloadSource(models.TextChoices):
    TEMPLATE = "template", "Built from a template"
    DOCUMENT = "document", "Posted as JSON"
    UPLOAD = "upload", "Uploaded problem file"
    WFFORMAT = "wfformat", "Imported WfCommons WfFormat file"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Algorithm(models.TextChoices):
    NSGA2 = "nsga2", "NSGA-II"
    NSGA3 = "nsga3", "NSGA-III"


class Objective(models.TextChoices):
    MAKESPAN = "makespan", "Makespan (s)"
    ENERGY = "energy", "Energy (J)"
    COST = "cost", "Cost"
    BANDWIDTH = "bandwidth", "Bandwidth (MB)"


class SolutionKind(models.TextChoices):
    FRONT = "front", "Pareto front"
    BASELINE = "baseline", "Baseline heuristic"


class DecisionStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


def _user_link(related_name: str, on_delete: Any = models.SET_NULL) -> Any:
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=on_delete,
        related_name=related_name,
    )


class Workload(models.Model):
    """A task graph to place on the fleet: its `tasks` and `edges` only.

    The devices come from the fleet snapshot each job takes when it is submitted, so one
    workload can be scheduled again as the fleet changes.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=10, choices=WorkloadSource.choices)
    template = models.CharField(max_length=40, blank=True, help_text="When built from one.")
    parameters = models.JSONField(default=dict, blank=True, help_text="The template's.")
    document = models.JSONField(help_text="The task graph: {tasks: [...], edges: [...]}.")
    task_count = models.PositiveIntegerField()
    edge_count = models.PositiveIntegerField()
    created_by = _user_link("scheduling_workloads")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.task_count} tasks)"


class SchedulingJob(models.Model):
    """One optimisation run of a workload on a snapshot of the online fleet.

    `problem` is frozen at submission (workload, fleet snapshot, objectives), so a retry
    solves exactly the same problem. `attempts` counts the workers that claimed the job;
    a worker writes only while the job is still running under its own attempt number, so
    a worker presumed dead can never overwrite the work of the one that took over.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workload = models.ForeignKey(Workload, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    objectives = models.JSONField(help_text="Names of the objectives to minimise, in order.")
    algorithm = models.CharField(max_length=8, choices=Algorithm.choices)
    generations = models.PositiveIntegerField()
    population = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    problem = models.JSONField(help_text="The full problem document the job solves.")
    fleet_size = models.PositiveIntegerField(help_text="Online devices in the snapshot.")

    progress = models.JSONField(null=True, blank=True, help_text="The latest generation.")
    history = models.JSONField(default=list, blank=True, help_text="One entry per generation.")
    hypervolume = models.JSONField(null=True, blank=True)
    lower_bounds = models.JSONField(null=True, blank=True)
    front_dominates_baselines = models.BooleanField(null=True, blank=True)
    wall_time_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    created_by = _user_link("scheduling_jobs")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"], name="job_status_created_idx")]

    def __str__(self) -> str:
        return f"{self.workload_id} {self.algorithm} ({self.status})"

    def is_stale(self, now: datetime | None = None) -> bool:
        """Whether it is running but its worker has stopped beating (presumed dead)."""
        if self.status != JobStatus.RUNNING:
            return False
        beat = self.heartbeat_at or self.started_at
        return beat is None or beat < (now or timezone.now()) - JOB_STALE_AFTER


class Solution(models.Model):
    """A placement a job found (a point of its Pareto front) or a baseline heuristic's."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(SchedulingJob, on_delete=models.CASCADE, related_name="solutions")
    kind = models.CharField(max_length=8, choices=SolutionKind.choices)
    name = models.CharField(max_length=40, blank=True, help_text="The baseline's name.")
    index = models.PositiveIntegerField(help_text="Position in the front, or among baselines.")
    objectives = models.JSONField(help_text="Objective name -> value.")
    assignment = models.JSONField(help_text="Task id -> device id.")
    timeline = models.JSONField(help_text="[{task, device, start, finish}] sorted by start.")
    feasible = models.BooleanField(default=True)
    deadline_violation_s = models.FloatField(default=0.0)
    is_knee = models.BooleanField(default=False)
    hypervolume = models.FloatField(null=True, blank=True, help_text="Baselines only.")

    class Meta:
        ordering = ["job", "kind", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "kind", "index"], name="one_solution_per_slot")
        ]

    def __str__(self) -> str:
        label = self.name if self.kind == SolutionKind.BASELINE else f"front #{self.index}"
        return f"{label} of job {self.job_id}"


class ReviewedDecisionError(RuntimeError):
    """Raised on any attempt to change or delete a decision once it has been reviewed."""


class Decision(models.Model):
    """A solution proposed for deployment and an admin's verdict on it: an audit trail.

    Once approved or rejected it is final: actions refuse to touch it, and `save` and
    `delete` raise. At most one decision per job is approved.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(SchedulingJob, on_delete=models.PROTECT, related_name="decisions")
    solution = models.ForeignKey(Solution, on_delete=models.PROTECT, related_name="decisions")
    status = models.CharField(
        max_length=8, choices=DecisionStatus.choices, default=DecisionStatus.PROPOSED
    )
    comment = models.TextField(blank=True, help_text="Why the proposer chose this solution.")
    # PROTECT: deleting a user must not rewrite who proposed or reviewed (SET_NULL would,
    # with an UPDATE that save() never sees). Deactivate such users instead.
    proposed_by = _user_link("scheduling_proposals", models.PROTECT)
    proposed_at = models.DateTimeField(default=timezone.now)
    review_comment = models.TextField(blank=True)
    reviewed_by = _user_link("scheduling_reviews", models.PROTECT)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-proposed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["job"],
                condition=Q(status="approved"),
                name="one_approved_decision_per_job",
                violation_error_message="This job already has an approved decision.",
            ),
        ]

    def __str__(self) -> str:
        return f"decision on job {self.job_id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._refuse_if_reviewed()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse_if_reviewed()
        return super().delete(*args, **kwargs)

    def _refuse_if_reviewed(self) -> None:
        # The stored row decides, not this instance: the action that reviews a decision
        # saves it while the stored row still says "proposed".
        if self._state.adding:
            return
        stored = Decision.objects.filter(pk=self.pk).values_list("status", flat=True).first()
        if stored is not None and stored != DecisionStatus.PROPOSED:
            raise ReviewedDecisionError(f"Decision {self.pk} was {stored}; it cannot change.")
