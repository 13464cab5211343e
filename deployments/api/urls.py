from django.urls import include, path
from rest_framework.routers import SimpleRouter

from deployments.api import views

router = SimpleRouter()
router.register("deployments", views.DeploymentViewSet, basename="deployment")
router.register("profiling-runs", views.ProfilingRunViewSet, basename="profilingrun")

urlpatterns = [
    path("agents/model-status/", views.ModelStatusView.as_view(), name="agent-model-status"),
    path("agents/profile-result/", views.ProfileResultView.as_view(), name="agent-profile-result"),
    path("agents/artifacts/<str:sha256>/", views.ArtifactView.as_view(), name="agent-artifact"),
    path("", include(router.urls)),
]
