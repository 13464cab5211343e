"""Seeded models of simulated devices: hardware, power, daily load, inference, links.

Pure and synchronous so the numbers can be tested without a server or an event loop.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge_agent.hardware import HardwareProfile
from edge_agent.power import LinearPowerModel
from edge_agent.telemetry import make_sample, utc_timestamp

TIERS = ("cloud", "edge", "end")
# Where each tier sends its data: cameras to the edge, the edge to the cloud.
UPLINK = {"end": "edge", "edge": "cloud"}


@dataclass(frozen=True)
class TierSpec:
    """Ranges a device of the tier is drawn from (uniform unless a tuple of choices)."""

    cores: tuple[int, ...]
    memory_gb: tuple[int, ...]
    gflops_per_core: tuple[float, float]
    accelerators: tuple[str, ...]
    accelerator_gflops: tuple[float, float]
    idle_w: tuple[float, float]
    busy_w: tuple[float, float]
    cost_per_hour: tuple[float, float]
    peak_inferences_per_s: tuple[float, float]
    service_ms: tuple[float, float]  # inference latency on an idle device
    noise_sigma: float  # load noise: one camera is bursty, a data centre averages out
    uplink_mbps: tuple[float, float]
    uplink_rtt_ms: tuple[float, float]


TIER_SPECS: dict[str, TierSpec] = {
    "cloud": TierSpec(
        cores=(32, 48, 64, 96, 128),
        memory_gb=(128, 256, 512),
        gflops_per_core=(30.0, 60.0),
        accelerators=("nvidia", ""),
        accelerator_gflops=(10_000.0, 60_000.0),
        idle_w=(100.0, 150.0),
        busy_w=(250.0, 400.0),
        cost_per_hour=(0.5, 4.0),
        peak_inferences_per_s=(800.0, 3000.0),
        service_ms=(3.0, 10.0),
        noise_sigma=0.02,
        uplink_mbps=(0.0, 0.0),
        uplink_rtt_ms=(0.0, 0.0),
    ),
    "edge": TierSpec(
        cores=(8, 12, 16),
        memory_gb=(16, 32, 64),
        gflops_per_core=(10.0, 25.0),
        accelerators=("nvidia", "npu"),
        accelerator_gflops=(1_000.0, 5_000.0),
        idle_w=(30.0, 45.0),
        busy_w=(70.0, 120.0),
        cost_per_hour=(0.01, 0.05),  # amortised purchase and site costs
        peak_inferences_per_s=(100.0, 400.0),
        service_ms=(8.0, 25.0),
        noise_sigma=0.05,
        uplink_mbps=(100.0, 1000.0),
        uplink_rtt_ms=(10.0, 40.0),
    ),
    "end": TierSpec(
        cores=(2, 4),
        memory_gb=(1, 2, 4),
        gflops_per_core=(2.0, 6.0),
        accelerators=("",),
        accelerator_gflops=(0.0, 0.0),
        idle_w=(2.0, 3.0),
        busy_w=(5.0, 10.0),
        cost_per_hour=(0.0, 0.0),
        peak_inferences_per_s=(10.0, 30.0),
        service_ms=(30.0, 80.0),
        noise_sigma=0.08,
        uplink_mbps=(20.0, 100.0),
        uplink_rtt_ms=(2.0, 10.0),
    ),
}


def _bump(hour: float, centre: float, width_h: float) -> float:
    """Gaussian bump on the 24-hour circle (23:00 is one hour from 00:00)."""
    distance = abs((hour - centre + 12.0) % 24.0 - 12.0)
    return math.exp(-0.5 * (distance / width_h) ** 2)


def city_load(hour: float) -> float:
    """City traffic: a trough at night, peaks at the morning and evening rush hours."""
    return (
        0.08
        + 0.55 * _bump(hour, 8.0, 1.5)
        + 0.30 * _bump(hour, 13.0, 4.0)
        + 0.65 * _bump(hour, 18.0, 2.0)
    )


def cloud_load(hour: float) -> float:
    """A data centre serves many cities and batch work: smoother, never near zero."""
    return 0.35 + 0.25 * _bump(hour, 14.0, 5.0) + 0.10 * _bump(hour, 19.0, 3.0)


def daily_load(tier: str, hour: float) -> float:
    return cloud_load(hour) if tier == "cloud" else city_load(hour)


def latency_percentiles(service_ms: float, utilisation: float) -> tuple[float, float, float]:
    """p50/p95/p99 from a queueing view: waits grow like rho / (1 - rho)."""
    rho = min(max(utilisation, 0.0), 0.95)
    queueing = rho / (1.0 - rho)
    p50 = service_ms * (1.0 + 0.5 * queueing)
    p95 = service_ms * (1.3 + 3.0 * queueing)
    p99 = service_ms * (1.6 + 4.6 * queueing)
    return round(p50, 2), round(p95, 2), round(p99, 2)


@dataclass(frozen=True)
class DeviceTraits:
    """What makes one simulated device differ from its tier's average."""

    load_scale: float
    hour_shift: float
    peak_inferences_per_s: float
    service_ms: float
    memory_base_percent: float
    base_accuracy: float
    uplink_mbps: float
    uplink_rtt_ms: float


def _draw_hardware(spec: TierSpec, rng: random.Random) -> HardwareProfile:
    cores = rng.choice(spec.cores)
    accelerator = rng.choice(spec.accelerators)
    gflops = cores * rng.uniform(*spec.gflops_per_core)
    if accelerator:
        gflops += rng.uniform(*spec.accelerator_gflops)
    return HardwareProfile(
        cpu_cores=cores,
        memory_mb=rng.choice(spec.memory_gb) * 1024,
        gflops=round(gflops, 1),
        accelerator=accelerator,
        power_idle_w=round(rng.uniform(*spec.idle_w), 1),
        power_busy_w=round(rng.uniform(*spec.busy_w), 1),
        cost_per_hour=round(rng.uniform(*spec.cost_per_hour), 3),
    )


def _draw_traits(spec: TierSpec, rng: random.Random) -> DeviceTraits:
    return DeviceTraits(
        load_scale=rng.uniform(0.7, 1.1),
        hour_shift=rng.uniform(-0.5, 0.5),
        peak_inferences_per_s=rng.uniform(*spec.peak_inferences_per_s),
        service_ms=rng.uniform(*spec.service_ms),
        memory_base_percent=rng.uniform(20.0, 45.0),
        base_accuracy=rng.uniform(0.86, 0.95),
        uplink_mbps=rng.uniform(*spec.uplink_mbps),
        uplink_rtt_ms=rng.uniform(*spec.uplink_rtt_ms),
    )


@dataclass
class SimulatedDevice:
    """One simulated device; ``sample`` advances its state (energy, load noise)."""

    index: int
    tier: str
    hardware: HardwareProfile
    traits: DeviceTraits
    rng: random.Random
    energy_j: float = 0.0
    _noise: float = field(default=0.0, repr=False)

    @property
    def name(self) -> str:
        return f"sim-{self.tier}-{self.index:04d}"

    def utilisation(self, moment: datetime) -> float:
        hour = moment.hour + moment.minute / 60.0 + moment.second / 3600.0
        # AR(1) noise: load wanders rather than flickering independently every sample.
        sigma = TIER_SPECS[self.tier].noise_sigma
        self._noise = 0.8 * self._noise + self.rng.gauss(0.0, sigma)
        load = self.traits.load_scale * daily_load(self.tier, hour + self.traits.hour_shift)
        return min(max(load + self._noise, 0.02), 0.98)

    def sample(self, moment: datetime, elapsed_s: float) -> dict[str, Any]:
        """The telemetry sample at ``moment``, ``elapsed_s`` after the previous one."""
        util = self.utilisation(moment)
        model = LinearPowerModel(self.hardware.power_idle_w, self.hardware.power_busy_w)
        power = model.power_w(util)
        self.energy_j += power * max(elapsed_s, 0.0)
        count = self._inference_count(util, elapsed_s)
        latencies = latency_percentiles(self.traits.service_ms, util) if count else None
        memory = self.traits.memory_base_percent + 25.0 * util + self.rng.gauss(0.0, 1.0)
        return make_sample(
            ts=utc_timestamp(moment),
            cpu_percent=100.0 * util,
            memory_percent=memory,
            power_w=round(power, 2),
            energy_j=round(self.energy_j, 2),
            inference_count=count,
            latencies_ms=latencies,
            metrics=self._metrics(moment) if self.tier != "cloud" else {},
        )

    def _inference_count(self, util: float, elapsed_s: float) -> int:
        expected = self.traits.peak_inferences_per_s * util * max(elapsed_s, 0.0)
        # Normal approximation of a Poisson count; exact Poisson is not worth the cost.
        return max(0, round(self.rng.gauss(expected, math.sqrt(expected))))

    def _metrics(self, moment: datetime) -> dict[str, float]:
        # Cameras see worse at night, which the drift detection work will want to find.
        darkness = _bump(moment.hour + moment.minute / 60.0, 2.0, 3.0)
        accuracy = self.traits.base_accuracy - 0.06 * darkness + self.rng.gauss(0.0, 0.005)
        return {"accuracy": round(min(max(accuracy, 0.0), 1.0), 4)}

    def links(self) -> list[dict[str, Any]]:
        uplink = UPLINK.get(self.tier)
        if uplink is None:
            return []
        bandwidth = self.traits.uplink_mbps * self.rng.uniform(0.8, 1.0)
        rtt = self.traits.uplink_rtt_ms * self.rng.uniform(1.0, 1.3)
        return [{"to": uplink, "bandwidth_mbps": round(bandwidth, 1), "rtt_ms": round(rtt, 1)}]


def draw_device(index: int, tier: str, seed: int) -> SimulatedDevice:
    """Device ``index`` of ``tier``; the same (seed, index, tier) always gives the same one."""
    if tier not in TIER_SPECS:
        raise ValueError(f"unknown tier {tier!r}")
    rng = random.Random(f"triad-sim:{seed}:{index}:{tier}")
    spec = TIER_SPECS[tier]
    return SimulatedDevice(index, tier, _draw_hardware(spec, rng), _draw_traits(spec, rng), rng)
