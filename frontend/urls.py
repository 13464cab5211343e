import re

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from frontend import deployment_views, hub_views, scheduling_views, views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.fleet, name="fleet"),
    path("devices/<uuid:device_id>/", views.device_detail, name="device"),
    path("devices/<uuid:device_id>/retire/", views.device_retire, name="device-retire"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("static-vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
    # Scheduling
    path("scheduling/workloads/", scheduling_views.workloads, name="scheduling-workloads"),
    path(
        "scheduling/workloads/<uuid:workload_id>/",
        scheduling_views.workload_detail,
        name="scheduling-workload",
    ),
    path("scheduling/jobs/", scheduling_views.jobs, name="scheduling-jobs"),
    path("scheduling/jobs/<uuid:job_id>/", scheduling_views.job_detail, name="scheduling-job"),
    path(
        "scheduling/jobs/<uuid:job_id>/cancel/",
        scheduling_views.job_cancel,
        name="scheduling-job-cancel",
    ),
    path(
        "scheduling/jobs/<uuid:job_id>/retry/",
        scheduling_views.job_retry,
        name="scheduling-job-retry",
    ),
    path(
        "scheduling/solutions/<uuid:solution_id>.json",
        scheduling_views.solution_data,
        name="scheduling-solution",
    ),
    path(
        "scheduling/solutions/<uuid:solution_id>/propose/",
        scheduling_views.solution_propose,
        name="scheduling-solution-propose",
    ),
    path("scheduling/decisions/", scheduling_views.decisions, name="scheduling-decisions"),
    path(
        "scheduling/decisions/<uuid:decision_id>/approve/",
        scheduling_views.decision_approve,
        name="scheduling-decision-approve",
    ),
    path(
        "scheduling/decisions/<uuid:decision_id>/reject/",
        scheduling_views.decision_reject,
        name="scheduling-decision-reject",
    ),
    # Model hub
    path("models/", hub_views.registry, name="models"),
    path("models/<uuid:model_id>/", hub_views.model_detail, name="models-model"),
    path("models/<uuid:model_id>/profile/", hub_views.model_profile, name="models-profile"),
    path(
        "models/<uuid:model_id>/download/",
        hub_views.model_download,
        name="models-model-download",
    ),
    path("models/datasets/", hub_views.datasets, name="models-datasets"),
    path(
        "models/datasets/<uuid:dataset_id>/download/",
        hub_views.dataset_download,
        name="models-dataset-download",
    ),
    path("models/jobs/", hub_views.jobs, name="models-jobs"),
    path("models/jobs/<uuid:job_id>/", hub_views.job_detail, name="models-job"),
    path("models/jobs/<uuid:job_id>/cancel/", hub_views.job_cancel, name="models-job-cancel"),
    path("models/jobs/<uuid:job_id>/retry/", hub_views.job_retry, name="models-job-retry"),
    path(
        "models/variants/<uuid:variant_id>/download/",
        hub_views.variant_download,
        name="models-variant-download",
    ),
    # Rollouts
    path("deployments/", deployment_views.deployments, name="deployments"),
    path("deployments/new/", deployment_views.deployment_new, name="deployment-new"),
    path(
        "deployments/<uuid:deployment_id>/",
        deployment_views.deployment_detail,
        name="deployment",
    ),
    path(
        "deployments/<uuid:deployment_id>/pause/",
        deployment_views.deployment_pause,
        name="deployment-pause",
    ),
    path(
        "deployments/<uuid:deployment_id>/resume/",
        deployment_views.deployment_resume,
        name="deployment-resume",
    ),
    path(
        "deployments/<uuid:deployment_id>/abort/",
        deployment_views.deployment_abort,
        name="deployment-abort",
    ),
]

# Static files under the ASGI server (no web server in front in the embedded setup).
# A STATIC_URL on another host (a CDN inside the site's network) is served by that host.
if not re.match(r"^[a-z]+://", settings.STATIC_URL):
    prefix = re.escape(settings.STATIC_URL.lstrip("/"))
    urlpatterns.append(re_path(rf"^{prefix}(?P<path>.+)$", views.static_file, name="static-file"))
