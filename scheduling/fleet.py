"""The fleet as the scheduling engine sees it: a snapshot of the online devices and links.

A job solves on the snapshot taken when it was submitted (stored in its problem), so its
solutions refer to devices that existed and were online then, whatever happens later.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q

from devices.models import Device, DeviceStatus, NetworkLink
from models_hub.models import MeasuredLatency, ModelArtifact, Variant
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


class ModelReferenceError(ValueError):
    """A task names a model that is not registered, or gives a bad `inferences`."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def with_measured_runtimes(
    tasks: list[dict[str, Any]], devices: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The tasks, where a task that names a model gets its measured runtime per device.

    A task's `model` is the id of a registered model or of one of its variants. On each
    device where an agent measured that model's latency (hardware-in-the-loop profiling,
    the newest measurement), the task runs `inferences` (default 1) times the measured p50,
    instead of the `flops / gflops` estimate. A runtime the workload gives for a device
    wins over a measurement.
    """
    references = _model_references(tasks)
    if not references:
        return tasks
    device_ids = [device["id"] for device in devices]
    measured = _latest_p50_ms(set(references.values()), device_ids)
    filled = []
    for index, task in enumerate(tasks):
        reference = references.get(index)
        runtimes = {
            device: measured[(reference, device)] / 1000 * float(task.get("inferences", 1))
            for device in device_ids
            if reference is not None and (reference, device) in measured
        }
        if runtimes:
            task = {**task, "runtime_s": {**runtimes, **task.get("runtime_s", {})}}
        filled.append(task)
    return filled


def _model_references(tasks: list[dict[str, Any]]) -> dict[int, str]:
    """Task index -> the model or variant id it names; refuses what names nothing."""
    references: dict[int, str] = {}
    for index, task in enumerate(tasks):
        if not isinstance(task, dict) or task.get("model") is None:
            continue
        path = f"tasks[{index}]"
        inferences = task.get("inferences", 1)
        if (
            isinstance(inferences, bool)
            or not isinstance(inferences, int | float)
            or not (0 < inferences < float("inf"))
        ):
            raise ModelReferenceError("must be a number > 0", f"{path}.inferences")
        try:
            reference = str(uuid.UUID(str(task["model"])))
        except ValueError:
            raise ModelReferenceError(
                "must be a model's or variant's id", f"{path}.model"
            ) from None
        references[index] = reference
    known = {
        str(pk)
        for queryset in (ModelArtifact.objects, Variant.objects)
        for pk in queryset.filter(pk__in=set(references.values())).values_list("pk", flat=True)
    }
    for index, reference in references.items():
        if reference not in known:
            raise ModelReferenceError(
                "no registered model or variant has this id", f"tasks[{index}].model"
            )
    return references


def _latest_p50_ms(references: set[str], device_ids: list[str]) -> dict[tuple[str, str], float]:
    rows = MeasuredLatency.objects.filter(
        Q(variant_id__in=references) | Q(variant__isnull=True, model_id__in=references),
        device_id__in=device_ids,
    ).order_by("measured_at")
    latest: dict[tuple[str, str], float] = {}
    for row in rows:  # oldest first: the newest measurement is written last
        reference = str(row.variant_id or row.model_id)
        latest[(reference, str(row.device_id))] = row.p50_ms
    return latest
