"""Classic placements the optimiser is measured against, and seeded with.

Each baseline returns an assignment and priority keys; the decoder turns them into the
schedule, so a baseline's figures come from the same model as the optimiser's.

- `heft`: Topcuoglu, Hariri and Wu (2002): tasks by decreasing upward rank (mean compute
  time plus the heaviest mean transfer-and-rank of a successor), each on the device where it
  finishes earliest, insertion-based.
- `peft`: Arabnejad and Barbosa (2014): HEFT with a look-ahead. An optimistic cost table
  holds, per task and device, the shortest remaining path to the exit if the task ran
  there; tasks go by decreasing mean table value, each where its finish plus that value is
  least.
- `all_cloud`, `all_on_end`: HEFT limited to one tier (pinned tasks stay where pinned).
- `greedy_energy`: in HEFT's order, each task where its compute and input-transfer energy
  are least, earliest finish breaking ties.
- `random`: a seeded random allowed device per task and random keys.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from scheduling.engine.decoder import Instance, _earliest_start, _place, _ready_time
from scheduling.engine.problem import TIERS, ProblemArrays

EARLIEST_FINISH = 0
LEAST_ENERGY = 1


@dataclass(frozen=True)
class Placement:
    """A solution in the optimiser's encoding: a device per task and a key per task."""

    assignment: npt.NDArray[np.int64]
    keys: npt.NDArray[np.float64]


def mean_transfer_s(arrays: ProblemArrays) -> npt.NDArray[np.float64]:
    """Each successor edge's transfer time averaged over all pairs of distinct devices."""
    m = arrays.n_devices
    if m == 1:
        return np.zeros(len(arrays.succ_bytes))
    off_diagonal = ~np.eye(m, dtype=bool)
    mean_latency = arrays.latency_s[off_diagonal].mean()
    mean_inverse_bandwidth = (1.0 / arrays.bytes_per_s[off_diagonal]).mean()
    transfer: npt.NDArray[np.float64] = mean_latency + arrays.succ_bytes * mean_inverse_bandwidth
    return transfer


def upward_ranks(arrays: ProblemArrays) -> npt.NDArray[np.float64]:
    """HEFT's upward rank of every task, from mean compute and mean transfer times."""
    allowed = arrays.allowed
    mean_compute = np.where(allowed, arrays.compute_s, 0.0).sum(1) / allowed.sum(1)
    transfer = mean_transfer_s(arrays)
    rank = np.zeros(arrays.n_tasks)
    for t in reversed(topological_order(arrays)):
        edges = slice(arrays.succ_ptr[t], arrays.succ_ptr[t + 1])
        successors = transfer[edges] + rank[arrays.succ_task[edges]]
        rank[t] = mean_compute[t] + (successors.max() if len(successors) else 0.0)
    return rank


def optimistic_costs(arrays: ProblemArrays) -> npt.NDArray[np.float64]:
    """PEFT's optimistic cost table: OCT[t, d] is the shortest path from t's finish on d to
    the exit, each later task on its best allowed device, a transfer costing its mean time
    when the device changes."""
    run = np.where(arrays.allowed, arrays.compute_s, np.inf)
    transfer = mean_transfer_s(arrays)
    table = np.zeros((arrays.n_tasks, arrays.n_devices))
    for t in reversed(topological_order(arrays)):
        for k in range(arrays.succ_ptr[t], arrays.succ_ptr[t + 1]):
            onward = table[arrays.succ_task[k]] + run[arrays.succ_task[k]]
            # min over the successor's device w of onward[w] + transfer if w != d.
            best = np.minimum(onward, onward.min() + transfer[k])
            table[t] = np.maximum(table[t], best)
    return table


def topological_order(
    arrays: ProblemArrays, priority: npt.NDArray[np.float64] | None = None
) -> list[int]:
    """Tasks in an order that respects every edge, smallest priority first among ready ones.

    This is the order the decoder follows for keys equal to `priority`.
    """
    n = arrays.n_tasks
    priority = np.arange(n, dtype=np.float64) if priority is None else priority
    waiting = np.diff(arrays.pred_ptr)
    ready = [(float(priority[t]), t) for t in range(n) if waiting[t] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, t = heapq.heappop(ready)
        order.append(t)
        for k in range(arrays.succ_ptr[t], arrays.succ_ptr[t + 1]):
            s = int(arrays.succ_task[k])
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, (float(priority[s]), s))
    return order


def heft_order(arrays: ProblemArrays) -> list[int]:
    """Decreasing upward rank; equal ranks (to 12 digits) in task order, as in the paper."""
    return topological_order(arrays, _rank_positions(upward_ranks(arrays)))


def _rank_positions(rank: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each task's position when sorted by decreasing rank, ties in task order."""
    rounded = np.array([float(f"{r:.12g}") for r in rank])
    by_rank = np.lexsort((np.arange(len(rank)), -rounded))
    position = np.empty(len(rank))
    position[by_rank] = np.arange(len(rank))
    return position


def keys_for(order: list[int]) -> npt.NDArray[np.float64]:
    """Keys that make the decoder follow `order` (which must be topological)."""
    keys = np.empty(len(order))
    keys[np.array(order, dtype=np.int64)] = (np.arange(len(order)) + 0.5) / len(order)
    return keys


def heft(arrays: ProblemArrays) -> Placement:
    return _list_schedule(arrays, arrays.allowed, EARLIEST_FINISH)


def peft(arrays: ProblemArrays) -> Placement:
    table = optimistic_costs(arrays)
    mean_table = np.where(arrays.allowed, table, 0.0).sum(1) / arrays.allowed.sum(1)
    order = topological_order(arrays, _rank_positions(mean_table))
    return _schedule_in_order(arrays, order, arrays.allowed, EARLIEST_FINISH, table)


def greedy_energy(arrays: ProblemArrays) -> Placement:
    return _list_schedule(arrays, arrays.allowed, LEAST_ENERGY)


def all_cloud(arrays: ProblemArrays) -> Placement | None:
    return _on_tier(arrays, "cloud")


def all_on_end(arrays: ProblemArrays) -> Placement | None:
    return _on_tier(arrays, "end")


def random_placement(arrays: ProblemArrays, rng: np.random.Generator) -> Placement:
    return Placement(random_assignment(arrays.allowed, rng), rng.random(arrays.n_tasks))


def random_assignment(
    allowed: npt.NDArray[np.bool_], rng: np.random.Generator, count: int | None = None
) -> npt.NDArray[np.int64]:
    """A uniformly random allowed device per task (`count` rows of them, if given)."""
    rows = 1 if count is None else count
    scores = rng.random((rows, *allowed.shape))
    choice = np.where(allowed[None], scores, -1.0).argmax(axis=2).astype(np.int64)
    return choice[0] if count is None else choice


def _on_tier(arrays: ProblemArrays, tier: str) -> Placement | None:
    on_tier = arrays.tier_index == TIERS.index(tier)
    allowed = np.where(arrays.pinned[:, None], arrays.allowed, arrays.allowed & on_tier[None])
    if not allowed.any(axis=1).all():
        return None
    return _list_schedule(arrays, allowed, EARLIEST_FINISH)


def _list_schedule(arrays: ProblemArrays, allowed: npt.NDArray[np.bool_], rule: int) -> Placement:
    no_lookahead = np.zeros(arrays.compute_s.shape)
    return _schedule_in_order(arrays, heft_order(arrays), allowed, rule, no_lookahead)


def _schedule_in_order(
    arrays: ProblemArrays,
    order: list[int],
    allowed: npt.NDArray[np.bool_],
    rule: int,
    lookahead: npt.NDArray[np.float64],
) -> Placement:
    assignment = _assign_in_order(
        np.array(order, dtype=np.int64), allowed, rule, lookahead, Instance.of(arrays)
    )
    return Placement(assignment, keys_for(order))


@njit(cache=True)
def _assign_in_order(order, allowed, rule, lookahead, instance):  # type: ignore[no-untyped-def]
    n, m = instance.compute.shape
    assign = np.full(n, -1, dtype=np.int64)
    finish = np.zeros(n)
    slot_start = np.empty((m, n))
    slot_end = np.empty((m, n))
    slot_count = np.zeros(m, dtype=np.int64)
    for t in order:
        best_d = -1
        best_finish = np.inf
        best_energy = np.inf
        for d in range(m):
            if not allowed[t, d]:
                continue
            duration = instance.compute[t, d]
            ready = _ready_time(t, d, assign, finish, instance)
            end = _earliest_start(slot_start, slot_end, slot_count, d, ready, duration)
            end += duration + lookahead[t, d]
            energy = 0.0
            if rule == LEAST_ENERGY:
                energy = instance.p_busy[d] * duration
                for k in range(instance.pred_ptr[t], instance.pred_ptr[t + 1]):
                    src = assign[instance.pred_task[k]]
                    energy += instance.pred_bytes[k] * instance.energy_per_byte[src, d]
            if energy < best_energy or (energy == best_energy and end < best_finish):
                best_d, best_finish, best_energy = d, end, energy
        ready = _ready_time(t, best_d, assign, finish, instance)
        duration = instance.compute[t, best_d]
        finish[t] = _place(slot_start, slot_end, slot_count, best_d, ready, duration) + duration
        assign[t] = best_d
    return assign


BaselineFactory = Callable[[ProblemArrays, np.random.Generator], Placement | None]

BASELINES: dict[str, BaselineFactory] = {
    "heft": lambda arrays, rng: heft(arrays),
    "peft": lambda arrays, rng: peft(arrays),
    "all_cloud": lambda arrays, rng: all_cloud(arrays),
    "all_on_end": lambda arrays, rng: all_on_end(arrays),
    "greedy_energy": lambda arrays, rng: greedy_energy(arrays),
    "random": random_placement,
}
