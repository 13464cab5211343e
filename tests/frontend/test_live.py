"""WebSockets: fleet events reach operators' sockets through the configured channel layer.

The layer is the SQLite one unless REDIS_URL is set; either way the heartbeat is recorded
through the action, so the event travels exactly as it does in production.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from controlplane.asgi import application
from devices.actions import record_heartbeat, retire_device

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://testserver")


def session_cookie(user: Any) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def open_socket(path: str, user: Any = None) -> tuple[WebsocketCommunicator, bool]:
    headers = [ORIGIN]
    if user is not None:
        headers.append(await sync_to_async(session_cookie)(user))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def test_heartbeat_reaches_an_operators_fleet_socket(operator: Any, enrolled: Any) -> None:
    device, _ = enrolled
    socket, connected = await open_socket("/ws/fleet/", operator)
    assert connected
    try:
        sample = {"ts": timezone.now(), "cpu_percent": 42.5, "memory_percent": 50.0}
        await sync_to_async(record_heartbeat)(device.id, [sample])
        message = await socket.receive_json_from(timeout=5)
        assert message["type"] == "devices"
        [summary] = message["devices"]
        assert summary["id"] == str(device.id)
        assert summary["status"] == "online"
        assert summary["cpu_percent"] == 42.5
        assert summary["tier"] == "end" and summary["name"] == "cam-1"

        await sync_to_async(retire_device)(device)
        message = await socket.receive_json_from(timeout=5)
        retired = message["devices"][0]
        assert retired["status"] == "retired"
        # Pages order summaries by `as_of`, so a late heartbeat cannot undo the retirement.
        assert datetime.fromisoformat(retired["as_of"]) > datetime.fromisoformat(summary["as_of"])
    finally:
        await socket.disconnect()


async def test_device_socket_gets_samples(admin_user: Any, enrolled: Any) -> None:
    device, _ = enrolled
    socket, connected = await open_socket(f"/ws/devices/{device.id}/", admin_user)
    assert connected
    try:
        now = timezone.now()
        await sync_to_async(record_heartbeat)(device.id, [{"ts": now, "energy_j": 99.0}])
        message = await socket.receive_json_from(timeout=5)
        assert message["type"] == "update" and message["device"]["energy_j"] == 99.0
        assert message["samples"] == [
            {
                "ts": now.isoformat(),
                "cpu_percent": None,
                "memory_percent": None,
                "power_w": None,
                "energy_j": 99.0,
            }
        ]
    finally:
        await socket.disconnect()


@pytest.mark.parametrize(
    "path", ["/ws/fleet/", "/ws/devices/00000000-0000-0000-0000-000000000000/"]
)
async def test_sockets_refuse_users_without_a_role(nobody: Any, path: str) -> None:
    for user in (nobody, None):
        socket, connected = await open_socket(path, user)
        assert not connected
        await socket.disconnect()
