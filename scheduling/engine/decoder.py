"""Decode (assignment, priority keys) into an insertion-based schedule and its objectives.

A solution is a device per task and a priority key per task. The decoder repeatedly takes
the ready task (all inputs scheduled) with the smallest key, and starts it on its device in
the earliest idle gap long enough, after its inputs arrive. This is the schedule model of
docs/scheduling-format.md; HEFT and the other baselines are decoded by the same code, so
every figure the engine reports comes from one implementation.

The loops are compiled with numba (`cache=True` keeps the machine code on disk between
runs). The benchmark also times the same code interpreted (`NUMBA_DISABLE_JIT=1`) to show
what compiling buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from scheduling.engine.problem import OBJECTIVES, ProblemArrays


@dataclass(frozen=True)
class Schedule:
    """One decoded solution: when each task runs, and what the schedule costs."""

    assignment: npt.NDArray[np.int64]
    start_s: npt.NDArray[np.float64]
    finish_s: npt.NDArray[np.float64]
    objectives: npt.NDArray[np.float64]  # in OBJECTIVES order
    deadline_violation_s: float

    @property
    def feasible(self) -> bool:
        return self.deadline_violation_s <= 0.0


class Instance(NamedTuple):
    """The arrays the compiled code reads, in one argument (numba compiles named tuples)."""

    compute: npt.NDArray[np.float64]
    pred_ptr: npt.NDArray[np.int64]
    pred_task: npt.NDArray[np.int64]
    pred_bytes: npt.NDArray[np.float64]
    succ_ptr: npt.NDArray[np.int64]
    succ_task: npt.NDArray[np.int64]
    latency: npt.NDArray[np.float64]
    bytes_per_s: npt.NDArray[np.float64]
    energy_per_byte: npt.NDArray[np.float64]
    p_idle: npt.NDArray[np.float64]
    p_busy: npt.NDArray[np.float64]
    price: npt.NDArray[np.float64]
    deadline: npt.NDArray[np.float64]

    @classmethod
    def of(cls, arrays: ProblemArrays) -> Instance:
        return cls(
            arrays.compute_s,
            arrays.pred_ptr,
            arrays.pred_task,
            arrays.pred_bytes,
            arrays.succ_ptr,
            arrays.succ_task,
            arrays.latency_s,
            arrays.bytes_per_s,
            arrays.energy_j_per_byte,
            arrays.power_idle_w,
            arrays.power_busy_w,
            arrays.price_per_s,
            arrays.deadline_s,
        )


def decode(arrays: ProblemArrays, assignment: npt.ArrayLike, keys: npt.ArrayLike) -> Schedule:
    """Decode one solution, keeping the start and finish times."""
    assign = np.ascontiguousarray(assignment, dtype=np.int64)
    key = np.ascontiguousarray(keys, dtype=np.float64)
    start = np.empty(arrays.n_tasks)
    finish = np.empty(arrays.n_tasks)
    objectives = np.empty(len(OBJECTIVES))
    violation = _decode_one(assign, key, Instance.of(arrays), start, finish, objectives)
    return Schedule(assign, start, finish, objectives, float(violation))


def decode_population(
    arrays: ProblemArrays, assignments: npt.NDArray[np.int64], keys: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Objectives (population x OBJECTIVES) and deadline violations of many solutions."""
    return _decode_many(  # type: ignore[no-any-return]
        np.ascontiguousarray(assignments, dtype=np.int64),
        np.ascontiguousarray(keys, dtype=np.float64),
        Instance.of(arrays),
    )


# nogil: a Celery worker's heartbeat thread keeps beating while a large population decodes.
@njit(cache=True, nogil=True)
def _decode_many(assignments, keys, instance):  # type: ignore[no-untyped-def]
    population, n = assignments.shape
    out = np.empty((population, 4))
    violations = np.empty(population)
    start = np.empty(n)
    finish = np.empty(n)
    for row in range(population):
        violations[row] = _decode_one(
            assignments[row], keys[row], instance, start, finish, out[row]
        )
    return out, violations


@njit(cache=True)
def _decode_one(assign, keys, instance, start, finish, objectives):  # type: ignore[no-untyped-def]
    n = assign.shape[0]
    m = instance.compute.shape[1]
    # Busy intervals per device, sorted by start.
    slot_start = np.empty((m, n))
    slot_end = np.empty((m, n))
    slot_count = np.zeros(m, dtype=np.int64)
    waiting = np.diff(instance.pred_ptr)
    heap_key = np.empty(n)
    heap_task = np.empty(n, dtype=np.int64)
    size = 0
    for t in range(n):
        if waiting[t] == 0:
            size = _heap_push(heap_key, heap_task, size, keys[t], t)
    while size > 0:
        t = heap_task[0]
        size = _heap_pop(heap_key, heap_task, size)
        d = assign[t]
        duration = instance.compute[t, d]
        ready = _ready_time(t, d, assign, finish, instance)
        start[t] = _place(slot_start, slot_end, slot_count, d, ready, duration)
        finish[t] = start[t] + duration
        for k in range(instance.succ_ptr[t], instance.succ_ptr[t + 1]):
            s = instance.succ_task[k]
            waiting[s] -= 1
            if waiting[s] == 0:
                size = _heap_push(heap_key, heap_task, size, keys[s], s)
    return _objectives(assign, finish, instance, objectives)


@njit(cache=True)
def _ready_time(t, d, assign, finish, instance):  # type: ignore[no-untyped-def]
    """When every input of task t has arrived at device d."""
    ready = 0.0
    for k in range(instance.pred_ptr[t], instance.pred_ptr[t + 1]):
        p = instance.pred_task[k]
        arrival = finish[p]
        src = assign[p]
        if src != d:
            arrival += (
                instance.latency[src, d] + instance.pred_bytes[k] / instance.bytes_per_s[src, d]
            )
        if arrival > ready:
            ready = arrival
    return ready


@njit(cache=True)
def _earliest_start(slot_start, slot_end, slot_count, d, ready, duration):  # type: ignore[no-untyped-def]
    """The start of the earliest gap on device d at or after `ready` that fits `duration`."""
    begin = ready
    for i in range(slot_count[d]):
        if slot_end[d, i] <= begin:
            continue
        if slot_start[d, i] - begin >= duration:
            return begin
        begin = slot_end[d, i]
    return begin


@njit(cache=True)
def _place(slot_start, slot_end, slot_count, d, ready, duration):  # type: ignore[no-untyped-def]
    """Book device d at its earliest fitting gap; return the start."""
    begin = _earliest_start(slot_start, slot_end, slot_count, d, ready, duration)
    count = slot_count[d]
    i = count
    while i > 0 and slot_start[d, i - 1] > begin:
        slot_start[d, i] = slot_start[d, i - 1]
        slot_end[d, i] = slot_end[d, i - 1]
        i -= 1
    slot_start[d, i] = begin
    slot_end[d, i] = begin + duration
    slot_count[d] = count + 1
    return begin


@njit(cache=True)
def _objectives(assign, finish, instance, out):  # type: ignore[no-untyped-def]
    n = assign.shape[0]
    m = instance.compute.shape[1]
    busy = np.zeros(m)
    used = np.zeros(m, dtype=np.bool_)
    makespan = 0.0
    violation = 0.0
    transfer_energy = 0.0
    crossing = 0.0
    for t in range(n):
        d = assign[t]
        busy[d] += instance.compute[t, d]
        used[d] = True
        makespan = max(makespan, finish[t])
        violation += max(0.0, finish[t] - instance.deadline[t])
        for k in range(instance.pred_ptr[t], instance.pred_ptr[t + 1]):
            src = assign[instance.pred_task[k]]
            if src != d:
                crossing += instance.pred_bytes[k]
                transfer_energy += instance.pred_bytes[k] * instance.energy_per_byte[src, d]
    energy = transfer_energy
    cost = 0.0
    for d in range(m):
        if used[d]:
            energy += instance.p_busy[d] * busy[d] + instance.p_idle[d] * (makespan - busy[d])
            cost += instance.price[d] * busy[d]
    out[0] = makespan
    out[1] = energy
    out[2] = cost
    out[3] = crossing / 1e6
    return violation


@njit(cache=True)
def _heap_push(heap_key, heap_task, size, key, task):  # type: ignore[no-untyped-def]
    """Push onto a binary min-heap ordered by (key, task)."""
    i = size
    heap_key[i] = key
    heap_task[i] = task
    while i > 0:
        parent = (i - 1) // 2
        if _before(heap_key[parent], heap_task[parent], heap_key[i], heap_task[i]):
            break
        _swap(heap_key, heap_task, i, parent)
        i = parent
    return size + 1


@njit(cache=True)
def _heap_pop(heap_key, heap_task, size):  # type: ignore[no-untyped-def]
    size -= 1
    heap_key[0] = heap_key[size]
    heap_task[0] = heap_task[size]
    i = 0
    while True:
        smallest = i
        for child in (2 * i + 1, 2 * i + 2):
            if child < size and _before(
                heap_key[child], heap_task[child], heap_key[smallest], heap_task[smallest]
            ):
                smallest = child
        if smallest == i:
            return size
        _swap(heap_key, heap_task, i, smallest)
        i = smallest


@njit(cache=True)
def _before(key_a, task_a, key_b, task_b):  # type: ignore[no-untyped-def]
    return key_a < key_b or (key_a == key_b and task_a < task_b)


@njit(cache=True)
def _swap(heap_key, heap_task, i, j):  # type: ignore[no-untyped-def]
    heap_key[i], heap_key[j] = heap_key[j], heap_key[i]
    heap_task[i], heap_task[j] = heap_task[j], heap_task[i]
