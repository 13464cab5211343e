"""A rollout's arithmetic: how targets split into phases, and when failures abort it.

Pure functions, so the rules are tested on their own and read in one place.
"""

from __future__ import annotations

import math


def phase_sizes(targets: int, canary_percent: int, batch_percent: int) -> list[int]:
    """How many devices each phase releases: the canary first, then equal batches.

    A canary percent above 0 releases at least one device, so a small fleet still gets
    one; `batch_percent` is of all the targets, and the last batch takes the remainder.
    """
    if targets <= 0:
        return []
    sizes = []
    canary = (
        min(targets, max(1, math.ceil(targets * canary_percent / 100))) if canary_percent else 0
    )
    if canary:
        sizes.append(canary)
    batch = max(1, math.ceil(targets * batch_percent / 100))
    remaining = targets - canary
    while remaining > 0:
        sizes.append(min(batch, remaining))
        remaining -= sizes[-1]
    return sizes


def phase_of_each(targets: int, canary_percent: int, batch_percent: int) -> list[int]:
    """The phase of the i-th target, for targets in release order."""
    return [
        phase
        for phase, size in enumerate(phase_sizes(targets, canary_percent, batch_percent))
        for _ in range(size)
    ]


def failures_exceed(failed: int, released: int, max_failed_percent: int) -> bool:
    """True when the failed share of the released devices is above the threshold.

    With the default threshold of 0, any failure aborts the rollout.
    """
    return released > 0 and failed * 100 > max_failed_percent * released
