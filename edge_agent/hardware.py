"""Measure the hardware profile a device reports at enrollment."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# Device nodes that reveal an accelerator without importing any vendor library.
ACCELERATOR_DEVICES: tuple[tuple[str, str], ...] = (
    ("nvidia0", "nvidia"),
    ("kfd", "amd"),
    ("apex_0", "edgetpu"),
    ("accel/accel0", "npu"),
)

# Default power heuristic, used only when nothing better is known (see estimate_power).
IDLE_BASE_W = 2.0
IDLE_PER_CORE_W = 1.0
BUSY_PER_CORE_W = 3.5


@dataclass(frozen=True)
class HardwareProfile:
    """The ``hardware`` object of the enrollment body (docs/agent-protocol.md)."""

    cpu_cores: int
    memory_mb: int
    gflops: float
    accelerator: str
    power_idle_w: float
    power_busy_w: float
    cost_per_hour: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cpu_cores() -> int:
    return psutil.cpu_count(logical=True) or os.cpu_count() or 1


def memory_mb() -> int:
    return int(psutil.virtual_memory().total // (1024 * 1024))


def measure_gflops(budget_s: float = 0.3, size: int = 384) -> float:
    """Best float32 matmul rate seen in ``budget_s`` seconds.

    Best-of rather than mean because the slow runs measure other processes and
    frequency ramp-up, not the device; the budget keeps enrollment fast on any device.
    """
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    flops_per_matmul = 2.0 * size**3
    np.matmul(a, b)  # warm-up: BLAS thread pool start and page faults are not compute
    best_s = float("inf")
    deadline = time.perf_counter() + budget_s
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        np.matmul(a, b)
        best_s = min(best_s, time.perf_counter() - start)
        runs += 1
    return round(flops_per_matmul / max(best_s, 1e-9) / 1e9, 2)


def detect_accelerator(dev_root: Path = Path("/dev")) -> str:
    for relative, name in ACCELERATOR_DEVICES:
        if (dev_root / relative).exists():
            return name
    return ""


def estimate_power(cores: int) -> tuple[float, float]:
    """Idle and busy watts guessed from the core count.

    Heuristic: idle = 2 W + 1 W per core (board, memory and uncore dominate small
    devices), busy = idle + 3.5 W per core (a loaded core of a low-power to server
    CPU draws roughly 2-5 W). A 4-core board gets 6/20 W, a 64-core server 66/290 W:
    the right order of magnitude, which is all a scheduler default needs. RAPL
    readings, where readable, replace the model at run time.
    """
    idle = IDLE_BASE_W + IDLE_PER_CORE_W * cores
    busy = idle + BUSY_PER_CORE_W * cores
    return round(idle, 1), round(busy, 1)


def measure_profile(gflops_budget_s: float = 0.3) -> HardwareProfile:
    cores = cpu_cores()
    idle_w, busy_w = estimate_power(cores)
    return HardwareProfile(
        cpu_cores=cores,
        memory_mb=memory_mb(),
        gflops=measure_gflops(gflops_budget_s),
        accelerator=detect_accelerator(),
        power_idle_w=idle_w,
        power_busy_w=busy_w,
        cost_per_hour=0.0,
    )


def guess_tier(profile: HardwareProfile) -> str:
    """Tier when the operator gives none: small boards are ``end``, big servers ``cloud``."""
    if profile.cpu_cores <= 4 and profile.memory_mb <= 8 * 1024:
        return "end"
    if profile.cpu_cores >= 32:
        return "cloud"
    return "edge"
