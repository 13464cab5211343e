from django.urls import path

from frontend import consumers

websocket_urlpatterns = [
    path("ws/fleet/", consumers.FleetConsumer.as_asgi()),
    path("ws/devices/<uuid:device_id>/", consumers.DeviceConsumer.as_asgi()),
]
