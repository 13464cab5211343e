from django.urls import include, path
from rest_framework.routers import DefaultRouter

from devices.api import views

router = DefaultRouter()
router.register("devices", views.DeviceViewSet)
router.register("enrollment-tokens", views.EnrollmentTokenViewSet)
router.register("links", views.NetworkLinkViewSet)

urlpatterns = [
    path("agents/enroll/", views.EnrollView.as_view(), name="agent-enroll"),
    path("agents/heartbeat/", views.HeartbeatView.as_view(), name="agent-heartbeat"),
    path(
        "agents/rotate-credential/",
        views.RotateCredentialView.as_view(),
        name="agent-rotate-credential",
    ),
    path("", include(router.urls)),
]
