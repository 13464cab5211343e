"""The fleet snapshot a job solves on: online devices and the links between them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from devices.models import Device, DeviceStatus, NetworkLink
from scheduling.engine import parse_problem
from scheduling.fleet import snapshot_fleet
from tests.scheduling.conftest import TWO_TASKS, make_device


def link(src: Device | str, dst: Device | str, **measured: Any) -> NetworkLink:
    def end(side: str, value: Device | str) -> dict[str, Any]:
        if isinstance(value, Device):
            return {f"{side}_device": value, f"{side}_tier": ""}
        return {f"{side}_device": None, f"{side}_tier": value}

    values = {"bandwidth_mbps": 100.0, "rtt_ms": 10.0, **measured}
    return NetworkLink.objects.create(**end("src", src), **end("dst", dst), **values)


def test_only_online_devices_that_compute(fleet: list[Device]) -> None:
    for status in (DeviceStatus.OFFLINE, DeviceStatus.PENDING, DeviceStatus.RETIRED):
        make_device("cam-0", status=status)
    make_device("cam-0", gflops=0.0)
    snapshot = snapshot_fleet()
    assert [d["id"] for d in snapshot["devices"]] == [
        str(d.pk) for d in sorted(fleet, key=lambda d: (d.tier, d.name))
    ]
    cloud = next(d for d in snapshot["devices"] if d["name"] == "cloud-0")
    assert cloud == {
        "id": str(fleet[0].pk), "name": "cloud-0", "tier": "cloud", "gflops": 1000.0,
        "memory_mb": 65536, "power_idle_w": 100.0, "power_busy_w": 300.0, "cost_per_hour": 2.0,
    }  # fmt: skip


def test_links_between_online_endpoints(fleet: list[Device]) -> None:
    _, edge, cam, _ = fleet
    offline = make_device("cam-9", status=DeviceStatus.OFFLINE)
    link(cam, edge, rtt_ms=8.0, bandwidth_mbps=90.0)
    link(edge, "cloud", rtt_ms=30.0)
    link("end", "edge", rtt_ms=12.0)
    link(offline, edge)
    link(cam, "cloud", bandwidth_mbps=0.0)  # measured nothing usable
    links = snapshot_fleet()["links"]
    assert links == [
        {"from": str(cam.pk), "to": str(edge.pk), "bandwidth_mbps": 90.0, "latency_ms": 4.0,
         "energy_j_per_mb": 0.5},
        {"from": str(edge.pk), "to": "cloud", "bandwidth_mbps": 100.0, "latency_ms": 15.0,
         "energy_j_per_mb": 0.2},
        {"from": "end", "to": "edge", "bandwidth_mbps": 100.0, "latency_ms": 6.0,
         "energy_j_per_mb": 0.5},
    ]  # fmt: skip


def test_a_pair_measured_both_ways_keeps_the_latest(fleet: list[Device]) -> None:
    _, edge, cam, _ = fleet
    link(cam, edge, rtt_ms=8.0)
    newer = link(edge, cam, rtt_ms=20.0)
    NetworkLink.objects.filter(pk=newer.pk).update(updated_at=timezone.now() + timedelta(1))
    assert [entry["latency_ms"] for entry in snapshot_fleet()["links"]] == [10.0]


def test_the_engine_accepts_the_snapshot(fleet: list[Device]) -> None:
    link(fleet[2], fleet[1])
    problem = parse_problem({**TWO_TASKS, **snapshot_fleet()})
    assert len(problem.devices) == 4 and len(problem.links) == 1
