"""Hardware profile measured on the test machine: plausible, fast, well-formed."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from edge_agent.hardware import (
    HardwareProfile,
    detect_accelerator,
    estimate_power,
    guess_tier,
    measure_gflops,
    measure_profile,
)

PROTOCOL_FIELDS = {
    "cpu_cores",
    "memory_mb",
    "gflops",
    "accelerator",
    "power_idle_w",
    "power_busy_w",
    "cost_per_hour",
}


def test_profile_is_plausible_and_quick() -> None:
    started = time.perf_counter()
    profile = measure_profile()
    assert time.perf_counter() - started < 10.0  # ~0.3 s when the machine is idle
    assert set(profile.to_json()) == PROTOCOL_FIELDS
    assert profile.cpu_cores >= 1
    assert profile.memory_mb == psutil.virtual_memory().total // (1024 * 1024)
    assert 0.1 < profile.gflops < 100_000
    assert 0 < profile.power_idle_w < profile.power_busy_w
    assert profile.cost_per_hour == 0.0


def test_gflops_benchmark_respects_its_budget() -> None:
    started = time.perf_counter()
    assert measure_gflops(budget_s=0.05, size=64) > 0
    assert time.perf_counter() - started < 5.0


def test_accelerator_detected_from_device_nodes(tmp_path: Path) -> None:
    assert detect_accelerator(tmp_path) == ""
    (tmp_path / "nvidia0").touch()
    assert detect_accelerator(tmp_path) == "nvidia"


def test_power_estimate_grows_with_cores() -> None:
    small, big = estimate_power(4), estimate_power(64)
    assert small == (6.0, 20.0)
    assert big[0] > small[0] and big[1] > small[1]


def test_tier_guess() -> None:
    def profile(cores: int, memory_mb: int) -> HardwareProfile:
        return HardwareProfile(cores, memory_mb, 10.0, "", 1.0, 2.0)

    assert guess_tier(profile(4, 4096)) == "end"
    assert guess_tier(profile(16, 65536)) == "edge"
    assert guess_tier(profile(64, 262144)) == "cloud"
