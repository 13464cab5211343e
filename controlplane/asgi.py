"""ASGI entry point: Django for HTTP, Channels consumers for WebSockets."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from devices.consumers import AGENT_WS_PATH, AgentConsumer  # noqa: E402
from devices.ingest import HeartbeatIngest  # noqa: E402
from frontend.routing import websocket_urlpatterns  # noqa: E402

browser_websockets = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
)
agent_websocket = AgentConsumer.as_asgi()


async def websockets(scope: Any, receive: Any, send: Any) -> None:
    """Agents' socket apart: they send no Origin and no session, only their credential."""
    if scope["path"] == AGENT_WS_PATH:
        await agent_websocket(scope, receive, send)
    else:
        await browser_websockets(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # Plain heartbeats are served before Django; see devices/ingest.py.
        "http": HeartbeatIngest(django_asgi_app),
        "websocket": websockets,
    }
)
