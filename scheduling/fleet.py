"""The fleet as the scheduling engine sees it: a snapshot of the online devices and links.

A job solves on the snapshot taken when it was submitted (stored in its problem), so its
solutions refer to devices that existed and were online then, whatever happens later.
"""

from __future__ import annotations

from typing import Any

from devices.models import Device, DeviceStatus, NetworkLink
from scheduling.engine.problem import DEFAULT_TIER_LINKS, TIERS


def snapshot_fleet() -> dict[str, list[dict[str, Any]]]:
    """`devices` and `links` in the problem format (docs/scheduling-format.md).

    Device ids are the devices' UUIDs as strings. Links come from `devices.NetworkLink`
    (measured by agents or set by operators); a link is kept only when both its ends are
    online devices or tiers.
    """
    devices = {str(d.pk): d for d in _schedulable_devices()}
    return {
        "devices": [_device_entry(device) for device in devices.values()],
        "links": _link_entries(devices),
    }


def _schedulable_devices() -> list[Device]:
    # A device that measured no speed could never finish a task; the engine refuses one.
    online = Device.objects.filter(status=DeviceStatus.ONLINE, gflops__gt=0)
    return list(online.order_by("tier", "name", "id"))


def _device_entry(device: Device) -> dict[str, Any]:
    return {
        "id": str(device.pk),
        "name": device.name,
        "tier": device.tier,
        "gflops": device.gflops,
        "memory_mb": device.memory_mb,
        "power_idle_w": device.power_idle_w,
        "power_busy_w": device.power_busy_w,
        "cost_per_hour": device.cost_per_hour,
    }


def _link_entries(devices: dict[str, Device]) -> list[dict[str, Any]]:
    """One link per pair of endpoints, the most recently measured when agents at both ends
    reported one (the engine reads a link both ways)."""
    by_pair: dict[frozenset[str], dict[str, Any]] = {}
    for link in NetworkLink.objects.order_by("updated_at", "id"):
        entry = _link_entry(link, devices)
        if entry is not None:
            by_pair[frozenset((entry["from"], entry["to"]))] = entry
    return list(by_pair.values())


def _link_entry(link: NetworkLink, devices: dict[str, Device]) -> dict[str, Any] | None:
    ends = [
        _endpoint(link.src_device_id, link.src_tier),
        _endpoint(link.dst_device_id, link.dst_tier),
    ]
    if any(end not in devices and end not in TIERS for end in ends):
        return None  # an end is offline, retired or pending
    # A measured bandwidth of 0 says nothing usable; the tier default serves better.
    if ends[0] == ends[1] or link.bandwidth_mbps <= 0:
        return None
    tiers = frozenset(_tier_of(end, devices) for end in ends)
    return {
        "from": ends[0],
        "to": ends[1],
        "bandwidth_mbps": link.bandwidth_mbps,
        # Agents measure round trips; a transfer pays the one-way latency.
        "latency_ms": link.rtt_ms / 2,
        # Links measure no energy; the tier pair's default keeps transfers from looking free.
        "energy_j_per_mb": DEFAULT_TIER_LINKS[tiers].energy_j_per_mb,
    }


def _endpoint(device_id: Any, tier: str) -> str:
    return str(device_id) if device_id is not None else tier


def _tier_of(endpoint: str, devices: dict[str, Device]) -> str:
    device = devices.get(endpoint)
    return device.tier if device is not None else endpoint
