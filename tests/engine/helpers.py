"""Small hand-made problem documents for engine tests."""

from __future__ import annotations

from typing import Any


def device(device_id: str, tier: str = "edge", **fields: Any) -> dict[str, Any]:
    """A device running 1 GFLOPS (so 1e9 flops take 1 s) unless told otherwise."""
    return {
        "id": device_id,
        "tier": tier,
        "gflops": 1.0,
        "memory_mb": 4096,
        "power_idle_w": 10.0,
        "power_busy_w": 50.0,
        "cost_per_hour": 3.6,
        **fields,
    }


def task(task_id: str, seconds: float = 1.0, **fields: Any) -> dict[str, Any]:
    """A task of `seconds` x 1e9 flops."""
    return {"id": task_id, "flops": seconds * 1e9, "memory_mb": 100, **fields}


def edge(src: str, dst: str, megabytes: float = 1.0) -> dict[str, Any]:
    return {"from": src, "to": dst, "bytes": megabytes * 1e6}


# 8 Mbit/s is 1 MB/s: a transfer of x MB takes latency + x seconds.
ONE_MB_PER_S = {"bandwidth_mbps": 8.0, "latency_ms": 100.0, "energy_j_per_mb": 2.0}


def problem_document(
    tasks: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    devices: list[dict[str, Any]] | None = None,
    objectives: tuple[str, ...] = ("makespan", "energy", "cost", "bandwidth"),
) -> dict[str, Any]:
    return {
        "tasks": tasks,
        "edges": edges,
        "devices": devices or [device("d0"), device("d1")],
        "links": [{"from": "edge", "to": "edge", **ONE_MB_PER_S}],
        "objectives": list(objectives),
    }
