"""Rollout pages: the deployments with their live progress, the form that starts one, and a
rollout's phases and devices with its Pause, Resume and Abort buttons. Thin: reads come
from `frontend.deployment_queries`, writes go through `deployments.actions`, whose
refusals are shown next to the field they name (or, for a rollout whose state forbids the
request, as a message)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from deployments import actions
from deployments.actions import DeploymentError
from deployments.models import Deployment, DeploymentStatus, TargetState
from frontend import deployment_queries as queries
from frontend.decorators import operator_required
from frontend.forms import DeploymentForm


@operator_required
@require_safe
def deployments(request: HttpRequest) -> HttpResponse:
    context = {"rows": queries.deployment_rows()}
    return render(request, "frontend/deployments/deployments.html", context)


def _preselected(request: HttpRequest) -> dict[str, Any]:
    """`?model=` or `?variant=` from the model hub's Deploy links, when it names one."""
    initial: dict[str, Any] = {}
    for name in ("model", "variant"):
        value = request.GET.get(name, "")
        try:
            initial[name] = str(UUID(value))
        except ValueError:
            continue
    return initial


@operator_required
@require_http_methods(["GET", "HEAD", "POST"])
def deployment_new(request: HttpRequest) -> HttpResponse:
    form = DeploymentForm(
        request.POST if request.method == "POST" else None, initial=_preselected(request)
    )
    if form.is_bound and form.is_valid():
        try:
            deployment = actions.create_deployment(
                created_by=request.user, **form.deployment_arguments()
            )
        except DeploymentError as error:
            form.refuse(error)
        else:
            first = queries.phase_label(deployment, 0).lower()
            released = deployment.targets.filter(phase=0).count()
            messages.success(
                request,
                f"Rollout “{deployment.name}” started: {first} released to {released} "
                f"device{'s' if released != 1 else ''}.",
            )
            return redirect("deployment", deployment_id=deployment.id)
    return render(
        request, "frontend/deployments/new.html", {"form": form}, status=400 if form.errors else 200
    )


@operator_required
@require_safe
def deployment_detail(request: HttpRequest, deployment_id: UUID) -> HttpResponse:
    deployment = get_object_or_404(
        Deployment.objects.select_related("model", "variant", "manifest", "created_by"),
        pk=deployment_id,
    )
    context = {
        "deployment": deployment,
        "rollout": queries.rollout(deployment),
        "target_rows_limit": queries.TARGET_ROWS,
        "target_text": queries.target_spec_text(deployment),
        "pausable": deployment.status == DeploymentStatus.RUNNING,
        "resumable": deployment.status == DeploymentStatus.PAUSED,
        "abortable": deployment.status in (DeploymentStatus.RUNNING, DeploymentStatus.PAUSED),
        "state_labels": dict(TargetState.choices),
    }
    return render(request, "frontend/deployments/deployment.html", context)


def _change(
    request: HttpRequest,
    deployment_id: UUID,
    change: Callable[[Deployment], Deployment],
    done: str,
) -> HttpResponse:
    deployment = get_object_or_404(Deployment, pk=deployment_id)
    try:
        change(deployment)
    except DeploymentError as error:
        # Someone else paused, resumed or aborted it first, or it has finished meanwhile.
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    return redirect("deployment", deployment_id=deployment.id)


@operator_required
@require_POST
def deployment_pause(request: HttpRequest, deployment_id: UUID) -> HttpResponse:
    return _change(
        request,
        deployment_id,
        actions.pause_deployment,
        "The rollout is paused: no further phase is released; devices already ordered carry on.",
    )


@operator_required
@require_POST
def deployment_resume(request: HttpRequest, deployment_id: UUID) -> HttpResponse:
    return _change(
        request, deployment_id, actions.resume_deployment, "The rollout is running again."
    )


@operator_required
@require_POST
def deployment_abort(request: HttpRequest, deployment_id: UUID) -> HttpResponse:
    return _change(
        request,
        deployment_id,
        lambda deployment: actions.abort_deployment(deployment, by=request.user),
        "The rollout is aborted: every released device is ordered back to what it ran before.",
    )
