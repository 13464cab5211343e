"""The device profiles a compression job estimates its variants' latency and energy for.

A profile is a class of online devices: same tier, same measured GFLOPS and busy power (to
two significant figures, since agents measure them and measurements wobble). A job takes
the classes of the fleet it was submitted on and keeps them, so its estimates refer to the
devices the fleet had then; with no online device, the engine's defaults (one per tier).
"""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import fmean
from typing import Any

from devices.models import Device, DeviceStatus, Tier

# More would crowd the comparison table; the classes with the most devices are kept.
MAX_PROFILES = 6
_TIER_ORDER = {tier: index for index, tier in enumerate(Tier.values)}


def _rounded(value: float, digits: int = 2) -> float:
    if value <= 0 or not math.isfinite(value):
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(value)))


def device_classes() -> list[dict[str, Any]]:
    """The online fleet's device classes as `{name, gflops, power_busy_w, devices}`,
    cloud first; empty when no device is online with a measured speed."""
    groups: dict[tuple[str, float, float], list[Device]] = defaultdict(list)
    online = Device.objects.filter(status=DeviceStatus.ONLINE, gflops__gt=0).order_by("name", "id")
    for device in online:
        key = (device.tier, _rounded(device.gflops), _rounded(device.power_busy_w))
        groups[key].append(device)
    largest = sorted(groups.items(), key=lambda item: (-len(item[1]), _TIER_ORDER[item[0][0]]))
    # Each tier keeps its largest class first, so that a fleet of one-off devices (every
    # measurement differs) still gets an estimate for its end devices; then by size.
    first_of_tier: dict[str, tuple[tuple[str, float, float], list[Device]]] = {}
    for item in largest:
        first_of_tier.setdefault(item[0][0], item)
    rest = [item for item in largest if item not in first_of_tier.values()]
    chosen = [*first_of_tier.values(), *rest][:MAX_PROFILES]
    kept = sorted(chosen, key=lambda item: (_TIER_ORDER[item[0][0]], -item[0][1]))
    classes: list[dict[str, Any]] = []
    names: set[str] = set()
    for (tier, _, _), devices in kept:
        name = _unique(_class_name(tier, devices), names)
        classes.append(
            {
                "name": name,
                "gflops": fmean(d.gflops for d in devices),
                "power_busy_w": fmean(d.power_busy_w for d in devices),
                "devices": len(devices),
            }
        )
    return classes


def _class_name(tier: str, devices: list[Device]) -> str:
    representative = devices[0].name[:60]
    others = len(devices) - 1
    return f"{tier} ({representative}{f' +{others}' if others else ''})"


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate = f"{name} #{number}"
        number += 1
    taken.add(candidate)
    return candidate


def device_profiles() -> list[dict[str, Any]]:
    """What a job freezes: the fleet's classes, or the engine's default profiles."""
    classes = device_classes()
    if classes:
        return [{k: c[k] for k in ("name", "gflops", "power_busy_w")} for c in classes]
    from models_hub.compression.measure import DEFAULT_DEVICE_PROFILES

    return [profile.as_dict() for profile in DEFAULT_DEVICE_PROFILES]
