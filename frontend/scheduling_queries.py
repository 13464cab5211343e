"""Read-only queries behind the scheduling pages (writes go through `scheduling.actions`)."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, QuerySet
from django.urls import reverse

from scheduling.models import (
    Decision,
    DecisionStatus,
    JobStatus,
    Objective,
    SchedulingJob,
    Solution,
    SolutionKind,
    Workload,
)

LIST_LIMIT = 200
# Stands for an id in the URL patterns the page's script fills in.
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
# Tasks listed on a workload page; the summary above the table counts them all.
TASK_ROWS = 200
OBJECTIVE_LABELS = dict(Objective.choices)
BASELINE_LABELS = {
    "heft": "HEFT",
    "peft": "PEFT",
    "all_cloud": "All on cloud",
    "all_on_end": "All on end",
    "greedy_energy": "Greedy energy",
    "random": "Random",
}
# Generators number their tasks ("detect-3", "filterContams-0-2", "t12"); what is left is the
# task's kind, which the Gantt chart colours by.
_SEPARATORS = "-_."


def task_kind(task_id: str) -> str:
    r"""The id less its trailing numbering: runs of digits, each after an optional separator.

    A loop from the end rather than a regex such as `(?:[-_.]?\d+)+$`, which backtracks
    exponentially on a long run of digits followed by anything else; front.js's `taskKind`
    is the same loop.
    """
    end = len(task_id)
    while end and task_id[end - 1].isdecimal():
        while end and task_id[end - 1].isdecimal():
            end -= 1
        if end and task_id[end - 1] in _SEPARATORS:
            end -= 1
    return task_id[:end] or task_id


def baseline_label(name: str) -> str:
    return BASELINE_LABELS.get(name, name.replace("_", " ").capitalize())


def solution_label(solution: Solution) -> str:
    if solution.kind == SolutionKind.BASELINE:
        return f"Baseline {baseline_label(solution.name)}"
    return f"Front #{solution.index}" + (" (knee)" if solution.is_knee else "")


# --- workloads --------------------------------------------------------------------------
def recent_workloads() -> QuerySet[Workload]:
    return (
        Workload.objects.select_related("created_by")
        .defer("document")
        .annotate(job_count=Count("jobs"))
        .order_by("-created_at")[:LIST_LIMIT]  # an aggregate drops Meta.ordering
    )


@dataclass
class TaskKindSummary:
    name: str
    count: int = 0
    gflop: float = 0.0
    memory_mb_max: float = 0.0


@dataclass
class GraphSummary:
    """What an operator wants to know of a task graph before scheduling it."""

    tasks: int
    edges: int
    sources: int
    sinks: int
    levels: int
    widest_level: int
    gflop: float
    transfer_mb: float
    pinned: int
    deadlines: int
    kinds: list[TaskKindSummary] = field(default_factory=list)


def graph_summary(document: dict[str, Any]) -> GraphSummary:
    """Sizes, depth and width of a stored (so already validated, acyclic) task graph."""
    tasks: list[dict[str, Any]] = document["tasks"]
    edges: list[dict[str, Any]] = document["edges"]
    children: dict[str, list[str]] = defaultdict(list)
    parents = Counter[str]()
    for edge in edges:
        children[edge["from"]].append(edge["to"])
        parents[edge["to"]] += 1
    # Longest path in edges, by Kahn's topological order.
    level = {task["id"]: 0 for task in tasks}
    waiting = {task["id"]: parents[task["id"]] for task in tasks}
    ready = deque(task_id for task_id, count in waiting.items() if count == 0)
    while ready:
        task_id = ready.popleft()
        for child in children[task_id]:
            level[child] = max(level[child], level[task_id] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    widths = Counter(level.values())
    kinds: dict[str, TaskKindSummary] = {}
    for task in tasks:
        kind = kinds.setdefault(task_kind(task["id"]), TaskKindSummary(task_kind(task["id"])))
        kind.count += 1
        kind.gflop += float(task["flops"]) / 1e9
        kind.memory_mb_max = max(kind.memory_mb_max, float(task.get("memory_mb", 0)))
    return GraphSummary(
        tasks=len(tasks),
        edges=len(edges),
        sources=sum(1 for task in tasks if parents[task["id"]] == 0),
        sinks=sum(1 for task in tasks if not children[task["id"]]),
        levels=max(widths) + 1 if widths else 0,
        widest_level=max(widths.values(), default=0),
        gflop=sum(kind.gflop for kind in kinds.values()),
        transfer_mb=sum(float(edge.get("bytes", 0)) for edge in edges) / 1e6,
        pinned=sum(1 for task in tasks if task.get("pinned_to")),
        deadlines=sum(1 for task in tasks if task.get("deadline_s") is not None),
        kinds=list(kinds.values()),
    )


def task_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The first TASK_ROWS tasks with their in- and out-degree."""
    inputs, outputs = Counter[str](), Counter[str]()
    for edge in document["edges"]:
        outputs[edge["from"]] += 1
        inputs[edge["to"]] += 1
    return [
        {
            "id": task["id"],
            "kind": task_kind(task["id"]),
            "gflop": float(task["flops"]) / 1e9,
            "memory_mb": task.get("memory_mb", 0),
            "pinned_to": task.get("pinned_to") or "",
            "deadline_s": task.get("deadline_s"),
            "inputs": inputs[task["id"]],
            "outputs": outputs[task["id"]],
        }
        for task in document["tasks"][:TASK_ROWS]
    ]


def workload_jobs(workload: Workload) -> list[JobRow]:
    return job_rows(SchedulingJob.objects.filter(workload=workload))


# --- jobs -------------------------------------------------------------------------------
@dataclass
class JobRow:
    job: SchedulingJob
    hypervolume: float | None
    final: bool  # the result's hypervolume, not the search's so far


def job_rows(jobs: QuerySet[SchedulingJob] | None = None) -> list[JobRow]:
    """Recent jobs with the best hypervolume known of each."""
    queryset = SchedulingJob.objects.all() if jobs is None else jobs
    rows = []
    for job in queryset.select_related("workload", "created_by").defer(
        "problem", "history", "workload__document"
    )[:LIST_LIMIT]:
        final = bool(job.hypervolume)
        if final:
            value = (job.hypervolume or {}).get("front")
        else:
            value = (job.progress or {}).get("hypervolume")
        rows.append(JobRow(job, value, final))
    return rows


def device_names(job: SchedulingJob) -> dict[str, dict[str, str]]:
    """Device id -> its name (the id where the snapshot has none) and tier."""
    return {
        device["id"]: {"name": device.get("name") or device["id"], "tier": device.get("tier", "")}
        for device in job.problem.get("devices", [])
    }


def job_data(job: SchedulingJob) -> dict[str, Any]:
    """What the job page's script starts from (and re-reads when it resynchronises)."""
    return {
        "id": str(job.id),
        "status": job.status,
        "attempts": job.attempts,
        "objectives": job.objectives,
        "labels": {name: OBJECTIVE_LABELS.get(name, name) for name in job.objectives},
        "generations": job.generations,
        "history": job.history,
        "devices": device_names(job),
        "solution_url": reverse("scheduling-solution", args=[_ZERO_UUID]),
        "propose_url": reverse("scheduling-solution-propose", args=[_ZERO_UUID]),
    }


def solution_summary(solution: Solution) -> dict[str, Any]:
    return {
        "id": str(solution.id),
        "kind": solution.kind,
        "name": solution.name,
        "index": solution.index,
        "label": solution_label(solution),
        "short": baseline_label(solution.name)
        if solution.kind == SolutionKind.BASELINE
        else f"#{solution.index}",
        "objectives": solution.objectives,
        "feasible": solution.feasible,
        "deadline_violation_s": solution.deadline_violation_s,
        "is_knee": solution.is_knee,
        "hypervolume": solution.hypervolume,
    }


def solution_detail(solution: Solution) -> dict[str, Any]:
    return {**solution_summary(solution), "timeline": solution.timeline}


@dataclass
class JobResult:
    """A succeeded job's front, baselines and bounds, for the tables and the charts."""

    front: list[Solution]
    baselines: list[Solution]
    lower_bounds: list[dict[str, Any]]
    data: dict[str, Any]


def job_result(job: SchedulingJob) -> JobResult | None:
    if job.status != JobStatus.SUCCEEDED:
        return None
    solutions = list(job.solutions.defer("timeline", "assignment"))
    front = [s for s in solutions if s.kind == SolutionKind.FRONT]
    baselines = [s for s in solutions if s.kind == SolutionKind.BASELINE]
    bounds = job.lower_bounds or {}
    lower_bounds = []
    for name in job.objectives:
        best = min((s.objectives.get(name) for s in front), default=None, key=_sort_key)
        bound = bounds.get(name)
        lower_bounds.append(
            {
                "objective": name,
                "label": OBJECTIVE_LABELS.get(name, name),
                "bound": bound,
                "best": best,
                "ratio": best / bound if best is not None and bound else None,
            }
        )
    data = {
        "front": [solution_summary(s) for s in front],
        "baselines": [solution_summary(s) for s in baselines],
        "lower_bounds": {name: bounds.get(name) for name in job.objectives},
        "hypervolume": job.hypervolume,
    }
    return JobResult(front, baselines, lower_bounds, data)


def _sort_key(value: float | None) -> float:
    return float("inf") if value is None else value


def selected_solution(job: SchedulingJob, solution_id: str | None) -> Solution | None:
    """The solution the page opens on: the one asked for, else the knee, else the first."""
    solutions = job.solutions.all()
    if solution_id:
        chosen = solutions.filter(pk=solution_id).first()
        if chosen is not None:
            return chosen
    front = solutions.filter(kind=SolutionKind.FRONT)
    return front.filter(is_knee=True).first() or front.first()


def job_decisions(job: SchedulingJob) -> QuerySet[Decision]:
    return job.decisions.select_related("solution", "proposed_by", "reviewed_by").order_by(
        "-proposed_at"
    )


def has_approved_decision(job: SchedulingJob) -> bool:
    return job.decisions.filter(status=DecisionStatus.APPROVED).exists()


# --- decisions --------------------------------------------------------------------------
def _decisions() -> QuerySet[Decision]:
    return Decision.objects.select_related(
        "job__workload", "solution", "proposed_by", "reviewed_by"
    ).defer("job__problem", "job__history", "job__workload__document", "solution__timeline")


def pending_decisions() -> list[Decision]:
    """Oldest first: a queue."""
    return list(_decisions().filter(status=DecisionStatus.PROPOSED).order_by("proposed_at"))


def reviewed_decisions() -> list[Decision]:
    return list(
        _decisions().exclude(status=DecisionStatus.PROPOSED).order_by("-reviewed_at")[:LIST_LIMIT]
    )
