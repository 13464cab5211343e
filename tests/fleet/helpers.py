"""Helpers shared by the fleet unit tests."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync

from devices.models import Device, DeviceStatus


def make_device(
    name: str,
    status: str = DeviceStatus.ONLINE,
    offline_after: datetime | None = None,
    **extra: Any,
) -> Device:
    """A device row written directly: these tests arrange state, the actions under test act."""
    return Device.objects.create(
        name=name,
        tier="edge",
        status=status,
        cpu_cores=4,
        memory_mb=4096,
        gflops=10.0,
        power_idle_w=3.0,
        power_busy_w=9.0,
        offline_after=offline_after,
        **extra,
    )


def device_summaries(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The device summaries in a fleet message."""
    return list(message.get("devices", []))


def mentions(message: dict[str, Any], device_id: object, status: str | None = None) -> bool:
    return any(
        item.get("id") == str(device_id) and (status is None or item.get("status") == status)
        for item in device_summaries(message)
    )


class GroupListener:
    """A channel of our own in a group of the configured layer (SQLite or Redis)."""

    def __init__(self, layer: Any, group: str) -> None:
        self.layer = layer
        self.group = group
        self.channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group, self.channel)

    def close(self) -> None:
        async_to_sync(self.layer.group_discard)(self.group, self.channel)

    def messages_until(self, done: Any, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Receive until `done(message)` holds; other traffic in the group is kept, not fatal."""

        async def collect() -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(timeout_s):
                while True:
                    message = await self.layer.receive(self.channel)
                    seen.append(message)
                    if done(message):
                        return seen

        return async_to_sync(collect)()
