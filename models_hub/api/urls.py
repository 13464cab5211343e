from django.urls import include, path
from rest_framework.routers import SimpleRouter

from models_hub.api import views

# Basenames are URL names project-wide (controlplane.middleware names the upload routes).
router = SimpleRouter()
router.register("artifacts", views.ModelArtifactViewSet, basename="modelartifact")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("jobs", views.CompressionJobViewSet, basename="compressionjob")
router.register("variants", views.VariantViewSet, basename="variant")

urlpatterns = [path("", include(router.urls))]
