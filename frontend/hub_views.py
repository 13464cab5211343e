"""Model hub pages: the registry with its uploads, data sets, compression jobs with their live
progress, and the comparison of the variants a job made. Thin: reads come from
`frontend.hub_queries`, writes go through `models_hub.actions`, whose refusals are shown
next to the field they name."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from deployments.actions import DeploymentError, start_profiling
from frontend import hub_queries as queries
from frontend.decorators import operator_required
from frontend.forms import (
    RECIPE_PRESETS,
    CompressionJobForm,
    DatasetUploadForm,
    ModelUploadForm,
    ProfilingForm,
)
from frontend.views import PLOTLY_VERSION
from models_hub import actions
from models_hub.actions import ModelHubError
from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    Framework,
    ModelArtifact,
    Variant,
)


# --- registry ---------------------------------------------------------------------------
@operator_required
@require_http_methods(["GET", "HEAD", "POST"])
def registry(request: HttpRequest) -> HttpResponse:
    """Every model name with its versions, and the form that registers one."""
    form = ModelUploadForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
    )
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            model = actions.register_model(
                upload=data["file"],
                name=form.model_name(),
                version=data["version"],
                input_shape=data["input_shape"],
                task=data["task"],
                description=data["description"],
                created_by=request.user,
            )
        except ModelHubError as error:
            form.refuse(error)
        else:
            messages.success(
                request,
                f"{model} registered: {Framework(model.framework).label}, input "
                f"{list(model.input_shape)}, {model.num_classes} outputs.",
            )
            return redirect("models-model", model_id=model.id)
    context = {"groups": queries.model_groups(), "form": form}
    return render(
        request, "frontend/models/registry.html", context, status=400 if form.errors else 200
    )


@operator_required
@require_http_methods(["GET", "HEAD", "POST"])
def model_detail(request: HttpRequest, model_id: UUID) -> HttpResponse:
    """A model's signature, measurements, versions, jobs and variants, and the form that
    submits a compression job on it."""
    model = get_object_or_404(ModelArtifact.objects.select_related("created_by"), pk=model_id)
    choices = queries.dataset_choices(model)
    form = CompressionJobForm(request.POST if request.method == "POST" else None, choices=choices)
    if form.is_bound and form.is_valid():
        try:
            job = actions.submit_compression_job(
                model=model, created_by=request.user, **form.job_arguments()
            )
        except ModelHubError as error:
            form.refuse(error)
        else:
            messages.success(request, f"Compression job queued: {job.recipe} on {model}.")
            return redirect("models-job", job_id=job.id)
    return _model_page(request, model, form, ProfilingForm(model=model), choices)


@operator_required
@require_POST
def model_profile(request: HttpRequest, model_id: UUID) -> HttpResponse:
    """Ask chosen agents to time the model or one of its variants on their hardware."""
    model = get_object_or_404(ModelArtifact, pk=model_id)
    form = ProfilingForm(request.POST, model=model)
    if form.is_valid():
        try:
            run = start_profiling(
                model=model,
                variant=form.chosen_variant(),
                devices=[device.pk for device in form.cleaned_data["devices"]],
                runs=form.cleaned_data["runs"],
                created_by=request.user,
            )
        except DeploymentError as error:
            form.refuse(error)
        else:
            count = run.targets.count()
            messages.success(
                request, f"{count} device{'s' if count != 1 else ''} asked to time {model}."
            )
            return redirect(f"{reverse('models-model', args=[model.id])}#measured")
    choices = queries.dataset_choices(model)
    return _model_page(request, model, CompressionJobForm(None, choices=choices), form, choices)


def _model_page(
    request: HttpRequest,
    model: ModelArtifact,
    form: CompressionJobForm,
    profile: ProfilingForm,
    choices: queries.DatasetChoices,
) -> HttpResponse:
    context: dict[str, Any] = {
        "model": model,
        "measured": (model.metrics or {}).get("measured"),
        "versions": queries.model_versions(model),
        "jobs": queries.job_rows(model),
        "variants": queries.model_variants(model),
        "form": form,
        "choices": choices,
        "presets": RECIPE_PRESETS,
        "quantise_only": model.framework != Framework.TORCH,
        "profile_form": profile,
        "latencies": queries.measured_latencies(model),
        "profiling": queries.profiling_in_progress(model),
    }
    failed = form.errors or profile.errors
    return render(request, "frontend/models/model.html", context, status=400 if failed else 200)


# --- data sets --------------------------------------------------------------------------
@operator_required
@require_http_methods(["GET", "HEAD", "POST"])
def datasets(request: HttpRequest) -> HttpResponse:
    form = DatasetUploadForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
    )
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            dataset = actions.register_dataset(
                upload=data["file"],
                name=form.dataset_name(),
                purpose=data["purpose"],
                description=data["description"],
                created_by=request.user,
            )
        except ModelHubError as error:
            form.refuse(error)
        else:
            labels = "labelled" if dataset.labelled else "without labels"
            messages.success(
                request,
                f"Data set “{dataset.name}” stored: {dataset.samples} samples of shape "
                f"{list(dataset.sample_shape)}, {labels}.",
            )
            return redirect("models-datasets")
    context = {"datasets": queries.recent_datasets(), "form": form}
    return render(
        request, "frontend/models/datasets.html", context, status=400 if form.errors else 200
    )


# --- jobs -------------------------------------------------------------------------------
@operator_required
@require_safe
def jobs(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/models/jobs.html", {"jobs": queries.job_rows()})


@operator_required
@require_safe
def job_detail(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(
        CompressionJob.objects.select_related(
            "model", "calibration", "evaluation", "training", "created_by"
        ),
        pk=job_id,
    )
    log, log_cut = queries.log_tail(job)
    wall_time_s = None
    if job.started_at and job.finished_at:
        wall_time_s = (job.finished_at - job.started_at).total_seconds()
    running = job.status in (CompressionJobStatus.QUEUED, CompressionJobStatus.RUNNING)
    context = {
        "job": job,
        "comparison": queries.comparison(job),
        "log": log,
        "log_cut": log_cut,
        "log_limit": queries.LOG_TAIL_LINES,
        "wall_time_s": wall_time_s,
        "retryable": job.status in (CompressionJobStatus.FAILED, CompressionJobStatus.CANCELLED)
        or job.is_stale(),
        # A stale job is cancelled at once, even if a stop was asked and never acted on.
        "cancellable": running and (not job.cancel_requested or job.is_stale()),
        "plotly_version": PLOTLY_VERSION,
    }
    return render(request, "frontend/models/job.html", context)


@operator_required
@require_POST
def job_cancel(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(CompressionJob, pk=job_id)
    try:
        job = actions.request_cancel(job)
    except ModelHubError as error:
        messages.error(request, error.message)
    else:
        if job.status == CompressionJobStatus.CANCELLED:
            messages.success(request, "The job is cancelled.")
        else:
            messages.success(request, "The job stops at the engine's next check.")
    return redirect("models-job", job_id=job.id)


@operator_required
@require_POST
def job_retry(request: HttpRequest, job_id: UUID) -> HttpResponse:
    job = get_object_or_404(CompressionJob, pk=job_id)
    try:
        actions.retry_job(job)
    except ModelHubError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "The job is queued again: the same recipe on the same data.")
    return redirect("models-job", job_id=job.id)


# --- downloads --------------------------------------------------------------------------
def _download(file: FieldFile) -> FileResponse:
    if not file.name or not file.storage.exists(file.name):
        raise Http404("The file is no longer stored.")
    return FileResponse(
        file.open("rb"),
        as_attachment=True,
        filename=PurePath(file.name).name,
        content_type="application/octet-stream",
    )


@operator_required
@require_safe
def model_download(request: HttpRequest, model_id: UUID) -> FileResponse:
    return _download(get_object_or_404(ModelArtifact, pk=model_id).file)


@operator_required
@require_safe
def variant_download(request: HttpRequest, variant_id: UUID) -> FileResponse:
    return _download(get_object_or_404(Variant, pk=variant_id).file)


@operator_required
@require_safe
def dataset_download(request: HttpRequest, dataset_id: UUID) -> FileResponse:
    return _download(get_object_or_404(Dataset, pk=dataset_id).file)
