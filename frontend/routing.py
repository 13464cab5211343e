from django.urls import path

from frontend import consumers

websocket_urlpatterns = [
    path("ws/fleet/", consumers.FleetConsumer.as_asgi()),
    path("ws/devices/<uuid:device_id>/", consumers.DeviceConsumer.as_asgi()),
    path("ws/scheduling/jobs/", consumers.SchedulingJobsConsumer.as_asgi()),
    path("ws/scheduling/jobs/<uuid:job_id>/", consumers.SchedulingJobConsumer.as_asgi()),
    path("ws/scheduling/decisions/", consumers.DecisionsConsumer.as_asgi()),
    path("ws/models/jobs/", consumers.CompressionJobsConsumer.as_asgi()),
    path("ws/models/jobs/<uuid:job_id>/", consumers.CompressionJobConsumer.as_asgi()),
    path("ws/deployments/", consumers.DeploymentsConsumer.as_asgi()),
    path("ws/deployments/<uuid:deployment_id>/", consumers.DeploymentConsumer.as_asgi()),
]
