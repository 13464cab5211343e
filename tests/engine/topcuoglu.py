"""The 10-task, 3-processor example of Topcuoglu, Hariri and Wu (2002), Fig. 2.

Computation costs are the paper's W matrix (as measured `runtime_s`); a communication cost
c becomes c x 10^6 bytes on links of 10^6 bytes/s with no latency, so transfers take c.
"""

from typing import Any

COMPUTE = {
    "T1": (14, 16, 9),
    "T2": (13, 19, 18),
    "T3": (11, 13, 19),
    "T4": (13, 8, 17),
    "T5": (12, 13, 10),
    "T6": (13, 16, 9),
    "T7": (7, 15, 11),
    "T8": (5, 11, 14),
    "T9": (18, 12, 20),
    "T10": (21, 7, 16),
}
COMMUNICATION = {
    ("T1", "T2"): 18, ("T1", "T3"): 12, ("T1", "T4"): 9, ("T1", "T5"): 11, ("T1", "T6"): 14,
    ("T2", "T8"): 19, ("T2", "T9"): 16, ("T3", "T7"): 23, ("T4", "T8"): 27, ("T4", "T9"): 23,
    ("T5", "T9"): 13, ("T6", "T8"): 15, ("T7", "T10"): 17, ("T8", "T10"): 11,
    ("T9", "T10"): 13,
}  # fmt: skip
PROCESSORS = ("P1", "P2", "P3")
# The paper's HEFT schedule (Fig. 4a): task -> (processor, start, finish).
HEFT_SCHEDULE = {
    "T1": ("P3", 0, 9), "T3": ("P3", 9, 28), "T4": ("P2", 18, 26), "T2": ("P1", 27, 40),
    "T5": ("P3", 28, 38), "T6": ("P2", 26, 42), "T9": ("P2", 56, 68), "T7": ("P3", 38, 49),
    "T8": ("P1", 57, 62), "T10": ("P2", 73, 80),
}  # fmt: skip


def problem_document() -> dict[str, Any]:
    return {
        "tasks": [
            {
                "id": task,
                "flops": 1,
                "memory_mb": 0,
                "runtime_s": dict(zip(PROCESSORS, costs, strict=True)),
            }
            for task, costs in COMPUTE.items()
        ],
        "edges": [{"from": a, "to": b, "bytes": c * 1e6} for (a, b), c in COMMUNICATION.items()],
        "devices": [
            {
                "id": p,
                "tier": "cloud",
                "gflops": 1,
                "memory_mb": 1024,
                "power_idle_w": 10,
                "power_busy_w": 100,
                "cost_per_hour": 3.6,
            }
            for p in PROCESSORS
        ],
        "links": [{"from": "cloud", "to": "cloud", "bandwidth_mbps": 8, "latency_ms": 0}],
        "objectives": ["makespan", "energy"],
    }
