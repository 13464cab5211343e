from django.urls import include, path
from rest_framework.routers import SimpleRouter

from scheduling.api import views

# No API root view of its own: /api/v1/ is the API's root.
router = SimpleRouter()
router.register("workloads", views.WorkloadViewSet)
router.register("jobs", views.SchedulingJobViewSet)
router.register("solutions", views.SolutionViewSet)
router.register("decisions", views.DecisionViewSet)

urlpatterns = [path("", include(router.urls))]
