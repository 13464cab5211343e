"""Read-only queries behind the console pages (writes go through `devices.actions`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models.functions import Lower
from django.utils import timezone

from devices.models import Device, DeviceStatus, EnrollmentToken, Tier

# Most samples a chart starts with: an hour at one sample a second.
CHART_POINTS = 3600


@dataclass
class TierGroup:
    tier: str
    label: str
    devices: list[Device] = field(default_factory=list)


def fleet_by_tier() -> tuple[list[TierGroup], dict[str, int]]:
    """Every device, grouped by tier in cloud-edge-end order, and the count per status."""
    groups = {value: TierGroup(value, label) for value, label in Tier.choices}
    devices = Device.objects.only(
        "id",
        "name",
        "tier",
        "status",
        "last_heartbeat_at",
        "last_cpu_percent",
        "last_memory_percent",
        "last_power_w",
        "last_energy_j",
    ).order_by(Lower("name"))  # the order fleet.js inserts new rows in
    for device in devices:
        groups[device.tier].devices.append(device)
    counts = Counter(d.status for g in groups.values() for d in g.devices)
    return list(groups.values()), {status: counts[status] for status in DeviceStatus.values}


def recent_telemetry(device: Device, hours: float = 1) -> dict[str, list[Any]]:
    """The device's samples of the last hour(s), oldest first, one list per series."""
    since = timezone.now() - timedelta(hours=hours)
    values = ("cpu_percent", "memory_percent", "power_w", "energy_j")
    newest_first = (
        device.telemetry.filter(ts__gte=since)
        .order_by("-ts")
        .values_list("ts", *values)[:CHART_POINTS]
    )
    rows: list[Any] = list(reversed(newest_first))
    series: dict[str, list[Any]] = {"ts": [row[0].isoformat() for row in rows]}
    for index, name in enumerate(values, start=1):
        series[name] = [row[index] for row in rows]
    return series


def recent_tokens(limit: int = 200) -> list[EnrollmentToken]:
    return list(EnrollmentToken.objects.select_related("created_by")[:limit])
