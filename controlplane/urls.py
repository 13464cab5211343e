from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from controlplane.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("devices.api.urls")),
    path("api/v1/scheduling/", include("scheduling.api.urls")),
    path("api/v1/models/", include("models_hub.api.urls")),
    path("api/v1/", include("deployments.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("", include("frontend.urls")),
]
