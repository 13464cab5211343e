"""Live events for the browser, sent through the channel layer after commit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from devices.models import Device, Telemetry

FLEET_GROUP = "fleet"


def device_group(device_id: object) -> str:
    return f"device.{device_id}"


def device_summary(device: Device) -> dict[str, Any]:
    return {
        "id": str(device.id),
        "name": device.name,
        "tier": device.tier,
        "status": device.status,
        "cpu_percent": device.last_cpu_percent,
        "memory_percent": device.last_memory_percent,
        "power_w": device.last_power_w,
        "energy_j": device.last_energy_j,
        "last_heartbeat_at": device.last_heartbeat_at.isoformat()
        if device.last_heartbeat_at
        else None,
    }


def sample_point(sample: Telemetry) -> dict[str, Any]:
    return {
        "ts": sample.ts.isoformat(),
        "cpu_percent": sample.cpu_percent,
        "memory_percent": sample.memory_percent,
        "power_w": sample.power_w,
        "energy_j": sample.energy_j,
    }


def publish_device(device: Device, samples: Iterable[Telemetry] = ()) -> None:
    """Tell the fleet page and the device's own page what changed."""
    layer = get_channel_layer()
    if layer is None:
        return
    summary = device_summary(device)
    send = async_to_sync(_send_all)
    send(layer, summary, [sample_point(s) for s in samples])


async def _send_all(layer: Any, summary: dict[str, Any], points: list[dict[str, Any]]) -> None:
    await layer.group_send(FLEET_GROUP, {"type": "fleet.device", "device": summary})
    await layer.group_send(
        device_group(summary["id"]),
        {"type": "device.update", "device": summary, "samples": points},
    )
