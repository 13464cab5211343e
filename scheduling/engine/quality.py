"""How good a front is: lower bounds, normalised hypervolume, dominance, knee and choices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from scheduling.engine.baselines import topological_order
from scheduling.engine.problem import OBJECTIVES, ProblemArrays

# Hypervolume's reference point, in normalised objective space (the ideal point is 0 and
# the worst point 1): a margin so that the extreme solutions still add volume.
REFERENCE = 1.1
# Relative slack when comparing objective values, so float noise cannot hide a tie.
TOLERANCE = 1e-9

Matrix = npt.NDArray[np.float64]


def lower_bounds(arrays: ProblemArrays) -> dict[str, float]:
    """Bounds no schedule can beat, each objective on its own.

    The makespan bound is the larger of the critical path (each task on its fastest allowed
    device, transfers free) and the total work over the total speed. A task's work is its
    least `compute time x device GFLOPS` over allowed devices, which is its flops when no
    measured runtime overrides them; the bound holds either way, since every device does at
    most `makespan x GFLOPS` of it.
    """
    compute = np.where(arrays.allowed, arrays.compute_s, np.inf)
    fastest = compute.min(axis=1)
    finish = np.zeros(arrays.n_tasks)
    for t in topological_order(arrays):
        preds = arrays.pred_task[arrays.pred_ptr[t] : arrays.pred_ptr[t + 1]]
        finish[t] = (finish[preds].max() if len(preds) else 0.0) + fastest[t]
    speed = arrays.gflops
    work = (compute * speed[None, :]).min(axis=1).sum()
    critical_path = float(finish.max())
    work_over_speed = float(work / speed.sum())
    return {
        "makespan": max(critical_path, work_over_speed),
        "critical_path_s": critical_path,
        "work_over_speed_s": work_over_speed,
        # The mask goes after the product: a device drawing 0 W busy would make inf x 0.
        "energy": float(
            np.where(arrays.allowed, arrays.compute_s * arrays.power_busy_w, np.inf)
            .min(axis=1)
            .sum()
        ),
        "cost": float(
            np.where(arrays.allowed, arrays.compute_s * arrays.price_per_s, np.inf)
            .min(axis=1)
            .sum()
        ),
        "bandwidth": _forced_crossing_mb(arrays),
    }


def _forced_crossing_mb(arrays: ProblemArrays) -> float:
    total = 0.0
    for t in range(arrays.n_tasks):
        for k in range(arrays.pred_ptr[t], arrays.pred_ptr[t + 1]):
            p = arrays.pred_task[k]
            if not (arrays.allowed[t] & arrays.allowed[p]).any():
                total += arrays.pred_bytes[k]
    return float(total) / 1e6


@dataclass(frozen=True)
class Normalisation:
    """Maps objective vectors to [0, 1] between an ideal and a worst point."""

    ideal: Matrix
    worst: Matrix

    @classmethod
    def spanning(cls, *point_sets: Matrix) -> Normalisation:
        points = np.vstack([p for p in point_sets if len(p)])
        return cls(points.min(axis=0), points.max(axis=0))

    def apply(self, points: Matrix) -> Matrix:
        span = self.worst - self.ideal
        span = np.where(span > 0, span, np.maximum(np.abs(self.ideal), 1.0) * 1e-9)
        return (np.atleast_2d(points) - self.ideal) / span

    def reference_point(self) -> Matrix:
        return self.ideal + REFERENCE * (self.worst - self.ideal)

    def hypervolume(self, points: Matrix) -> float:
        if len(points) == 0:
            return 0.0
        indicator = HV(ref_point=np.full(self.ideal.shape[0], REFERENCE))
        return float(indicator(self.apply(points)))


def non_dominated(points: Matrix) -> npt.NDArray[np.int64]:
    """Indices of the points no other point dominates."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    front = NonDominatedSorting().do(points, only_non_dominated_front=True)
    return np.asarray(front, dtype=np.int64)


def weakly_dominated_by(point: Matrix, front: Matrix) -> bool:
    """Whether some front point is at least as good as `point` in every objective."""
    if len(front) == 0:
        return False
    slack = TOLERANCE * np.maximum(np.abs(point), 1.0)
    return bool((front <= point + slack).all(axis=1).any())


def knee_index(front: Matrix) -> int:
    """The solution nearest the ideal point once each objective is scaled to [0, 1]."""
    scaled = Normalisation.spanning(front).apply(front)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def weighted_choice(front: Matrix, weights: Sequence[float]) -> int:
    """The solution with the least weighted sum of scaled objectives."""
    scaled = Normalisation.spanning(front).apply(front)
    return int(np.argmin(scaled @ np.asarray(weights, dtype=np.float64)))


def thin_front(front: Matrix, limit: int, keep: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Indices of at most `limit` points (more if `keep` needs it), spread out.

    Points marked `keep` stay; the rest are dropped most-crowded first, so the extremes and
    the gaps of the front survive.
    """
    chosen = np.arange(len(front))
    while len(chosen) > limit:
        distance = _crowding(Normalisation.spanning(front[chosen]).apply(front[chosen]))
        distance[keep[chosen]] = np.inf
        victim = int(np.argmin(distance))
        if not np.isfinite(distance[victim]):
            break
        chosen = np.delete(chosen, victim)
    return chosen


def _crowding(scaled: Matrix) -> Matrix:
    n, m = scaled.shape
    distance = np.zeros(n)
    for j in range(m):
        order = np.argsort(scaled[:, j], kind="stable")
        distance[order[0]] = distance[order[-1]] = np.inf
        gaps = scaled[order[2:], j] - scaled[order[:-2], j]
        distance[order[1:-1]] += gaps
    return distance


def objective_columns(objectives: Sequence[str]) -> list[int]:
    return [OBJECTIVES.index(name) for name in objectives]


def as_mapping(objectives: Sequence[str], values: Matrix) -> dict[str, float]:
    return {name: float(v) for name, v in zip(objectives, values, strict=True)}
