"""Scheduling pages: workloads, jobs with their live convergence and Pareto front, and the
review queue. Thin: reads come from `frontend.scheduling_queries`, writes go through
`scheduling.actions`, whose refusals are shown next to the field they name."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from frontend import scheduling_queries as queries
from frontend.decorators import admin_required, operator_required
from frontend.forms import (
    CommentForm,
    SchedulingJobForm,
    WorkloadTemplateForm,
    WorkloadUploadForm,
)
from frontend.views import PLOTLY_VERSION
from scheduling import actions
from scheduling.actions import SchedulingError
from scheduling.models import (
    Decision,
    JobStatus,
    SchedulingJob,
    Solution,
    Workload,
)
from scheduling.templates import TEMPLATES

TEMPLATE_FORM = "template"
UPLOAD_FORM = "upload"


# --- workloads --------------------------------------------------------------------------
@operator_required
@require_http_methods(["GET", "HEAD", "POST"])
def workloads(request: HttpRequest) -> HttpResponse:
    """The list, and the two ways to add one: a template or a file."""
    posted = request.POST.get("form") if request.method == "POST" else None
    template_form = WorkloadTemplateForm(request.POST if posted == TEMPLATE_FORM else None)
    upload_form = WorkloadUploadForm(
        request.POST if posted == UPLOAD_FORM else None,
        request.FILES if posted == UPLOAD_FORM else None,
    )
    workload = None
    if posted == TEMPLATE_FORM and template_form.is_valid():
        data = template_form.cleaned_data
        try:
            workload = actions.create_workload_from_template(
                name=data["name"],
                template=data["template"],
                parameters=data["parameters"],
                created_by=request.user,
            )
        except SchedulingError as error:
            template_form.refuse(error)
    elif posted == UPLOAD_FORM and upload_form.is_valid():
        try:
            workload = actions.create_workload_from_file(
                name=upload_form.workload_name(),
                file=upload_form.cleaned_data["file"],
                created_by=request.user,
            )
        except SchedulingError as error:
            upload_form.refuse(error)
    if workload is not None:
        messages.success(
            request, f"Workload “{workload.name}” stored: {workload.task_count} tasks."
        )
        return redirect("scheduling-workload", workload_id=workload.id)
    context = {
        "workloads": queries.recent_workloads(),
        "template_form": template_form,
        "upload_form": upload_form,
        "templates": TEMPLATES.values(),
    }
    failed = template_form.errors or upload_form.errors
    return render(
        request, "frontend/scheduling/workloads.html", context, status=400 if failed else 200
    )


@operator_required
@require_http_methods(["GET", "HEAD", "POST"])
def workload_detail(request: HttpRequest, workload_id: UUID) -> HttpResponse:
    """The graph's summary, its jobs, and the form that submits a new job."""
    workload = get_object_or_404(Workload, pk=workload_id)
    form = SchedulingJobForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            job = actions.submit_job(
                workload=workload, created_by=request.user, **form.cleaned_data
            )
        except SchedulingError as error:
            form.refuse(error)
        else:
            messages.success(request, f"Job queued on a fleet of {job.fleet_size} online devices.")
            return redirect("scheduling-job", job_id=job.id)
    context = {
        "workload": workload,
        "summary": queries.graph_summary(workload.document),
        "tasks": queries.task_rows(workload.document),
        "task_rows_limit": queries.TASK_ROWS,
        "jobs": queries.workload_jobs(workload),
        "form": form,
    }
    status = 400 if form.errors else 200
    return render(request, "frontend/scheduling/workload.html", context, status=status)


# --- jobs -------------------------------------------------------------------------------
@operator_required
@require_safe
def jobs(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/scheduling/jobs.html", {"rows": queries.job_rows()})


@operator_required
@require_safe
def job_detail(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(
        SchedulingJob.objects.select_related("workload", "created_by"), pk=job_id
    )
    return _job_page(
        request, job, queries.selected_solution(job, _uuid(request.GET.get("solution")))
    )


def _job_page(
    request: HttpRequest,
    job: SchedulingJob,
    selected: Solution | None,
    propose_form: CommentForm | None = None,
    status: int = 200,
) -> HttpResponse:
    result = queries.job_result(job)
    context: dict[str, Any] = {
        "job": job,
        "data": queries.job_data(job),
        "result": result,
        "selected": selected,
        "selected_data": queries.solution_detail(selected) if selected else None,
        "propose_form": propose_form or CommentForm(),
        "approved": queries.has_approved_decision(job),
        "decisions": queries.job_decisions(job),
        "retryable": job.status in (JobStatus.FAILED, JobStatus.CANCELLED) or job.is_stale(),
        # A stale job is cancelled at once, even if a stop was asked and never acted on.
        "cancellable": job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        and (not job.cancel_requested or job.is_stale()),
        "plotly_version": PLOTLY_VERSION,
    }
    return render(request, "frontend/scheduling/job.html", context, status=status)


def _uuid(value: str | None) -> str | None:
    try:
        return str(UUID(value)) if value else None
    except ValueError:
        return None


@operator_required
@require_POST
def job_cancel(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(SchedulingJob, pk=job_id)
    try:
        job = actions.request_cancel(job)
    except SchedulingError as error:
        messages.error(request, error.message)
    else:
        if job.status == JobStatus.CANCELLED:
            messages.success(request, "The job is cancelled.")
        else:
            messages.success(request, "The job stops after its current generation.")
    return redirect("scheduling-job", job_id=job.id)


@operator_required
@require_POST
def job_retry(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(SchedulingJob, pk=job_id)
    try:
        actions.retry_job(job)
    except SchedulingError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "The job is queued again; it solves the same problem.")
    return redirect("scheduling-job", job_id=job.id)


# --- solutions --------------------------------------------------------------------------
@operator_required
@require_safe
def solution_data(request: HttpRequest, solution_id: UUID) -> JsonResponse:
    """A solution with its timeline, for the job page's Gantt chart."""
    solution = get_object_or_404(Solution, pk=solution_id)
    return JsonResponse(queries.solution_detail(solution))


@operator_required
@require_POST
def solution_propose(request: HttpRequest, solution_id: UUID) -> HttpResponse:
    solution = get_object_or_404(Solution.objects.select_related("job"), pk=solution_id)
    form = CommentForm(request.POST)
    if form.is_valid():
        try:
            actions.propose_decision(
                solution=solution, proposed_by=request.user, comment=form.cleaned_data["comment"]
            )
        except SchedulingError as error:
            form.refuse(error)
        else:
            label = queries.solution_label(solution)
            messages.success(request, f"{label} is proposed; an admin reviews it.")
            url = reverse("scheduling-job", args=[solution.job_id])
            return redirect(f"{url}?solution={solution.id}#decisions")
    job = SchedulingJob.objects.select_related("workload", "created_by").get(pk=solution.job_id)
    return _job_page(request, job, solution, propose_form=form, status=400)


# --- decisions --------------------------------------------------------------------------
@operator_required
@require_safe
def decisions(request: HttpRequest) -> HttpResponse:
    return _decisions_page(request)


def _decisions_page(
    request: HttpRequest, failed: tuple[Decision, CommentForm] | None = None
) -> HttpResponse:
    pending = [
        (decision, failed[1] if failed and failed[0].pk == decision.pk else CommentForm())
        for decision in queries.pending_decisions()
    ]
    context = {"pending": pending, "reviewed": queries.reviewed_decisions()}
    return render(
        request, "frontend/scheduling/decisions.html", context, status=400 if failed else 200
    )


def _review(request: HttpRequest, decision_id: UUID, approve: bool) -> HttpResponse:
    decision = get_object_or_404(Decision.objects.select_related("solution"), pk=decision_id)
    form = CommentForm(request.POST)
    if form.is_valid():
        review = actions.approve_decision if approve else actions.reject_decision
        try:
            decision = review(
                decision, reviewed_by=request.user, comment=form.cleaned_data["comment"]
            )
        except actions.SchedulingConflict as error:
            # Reviewed by someone else first, or the job has its approved decision already.
            messages.error(request, error.message)
            return redirect("scheduling-decisions")
        except SchedulingError as error:
            form.refuse(error)
        else:
            label = queries.solution_label(decision.solution)
            messages.success(request, f"{label} of job {decision.job_id} is {decision.status}.")
            return redirect("scheduling-decisions")
    return _decisions_page(request, failed=(decision, form))


@admin_required
@require_POST
def decision_approve(request: HttpRequest, decision_id: UUID) -> HttpResponse:
    return _review(request, decision_id, approve=True)


@admin_required
@require_POST
def decision_reject(request: HttpRequest, decision_id: UUID) -> HttpResponse:
    return _review(request, decision_id, approve=False)
