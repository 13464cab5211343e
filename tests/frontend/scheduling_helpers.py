"""Shared by the scheduling page, WebSocket and browser tests: a small online fleet and a
tiny solve."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.utils import timezone

from devices.models import Device, DeviceStatus

# name, tier, GFLOPS, memory MB, idle W, busy W, cost per hour
DeviceProfile = tuple[str, str, float, int, float, float, float]
FLEET: list[DeviceProfile] = [
    ("cloud-a", "cloud", 1000.0, 65536, 100.0, 300.0, 2.0),
    ("edge-a", "edge", 200.0, 16384, 30.0, 90.0, 0.2),
    ("cam-a", "end", 10.0, 4096, 2.0, 8.0, 0.0),
    ("cam-b", "end", 8.0, 4096, 2.0, 6.0, 0.0),
]
# A few generations of a few individuals: these tests check what is shown, not the front.
SMALL_RUN: dict[str, Any] = {"generations": 4, "population": 8, "seed": 1, "algorithm": "nsga2"}


def make_fleet(profiles: Sequence[DeviceProfile] = FLEET) -> list[Device]:
    """Online devices, written directly: the tests arrange the fleet that jobs snapshot.

    They stay online for an hour, whatever offline sweep a worker runs meanwhile.
    """
    now = timezone.now()
    return [
        Device.objects.create(
            name=name,
            tier=tier,
            status=DeviceStatus.ONLINE,
            cpu_cores=4,
            gflops=gflops,
            memory_mb=memory,
            power_idle_w=idle,
            power_busy_w=busy,
            cost_per_hour=cost,
            last_heartbeat_at=now,
            offline_after=now + timedelta(hours=1),
        )
        for name, tier, gflops, memory, idle, busy, cost in profiles
    ]
