"""The agents' WebSocket: a push channel that tells an agent to heartbeat now.

The heartbeat stays the one way desired state travels (pull); this only shortens the wait
for it (push), so a connected device acts on a new order within a second, and an agent that
cannot hold a WebSocket loses nothing but that second. Agents authenticate with their
device credential (`Authorization: Bearer`), as over REST.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from devices.credentials import parse_device_credential, secrets_match
from devices.events import agent_group
from devices.models import DeviceCredential, DeviceStatus

AGENT_WS_PATH = "/ws/agents/"


def _device_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The id of the device whose live credential the headers carry, else None."""
    authorization = dict(headers).get(b"authorization", b"").split()
    if len(authorization) != 2 or authorization[0].lower() != b"bearer":
        return None
    presented = authorization[1].decode("ascii", errors="replace")
    parsed = parse_device_credential(presented)
    if parsed is None:
        return None
    credential = (
        DeviceCredential.objects.filter(device_id=parsed[0], revoked_at__isnull=True)
        .exclude(device__status=DeviceStatus.RETIRED)
        .first()
    )
    if credential is None or not secrets_match(presented, credential.key_hash):
        return None
    return str(credential.device_id)


class AgentConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        device_id = await database_sync_to_async(_device_of)(self.scope["headers"])
        if device_id is None:
            await self.close(code=4401)
            return
        self.group = agent_group(device_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def agent_nudge(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "nudge"})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Agents send nothing; whatever comes is ignored (pings are the protocol's)."""
