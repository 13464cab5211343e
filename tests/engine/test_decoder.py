"""The decoder against schedules worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scheduling.engine import parse_problem
from scheduling.engine.decoder import decode, decode_population
from tests.engine.helpers import device, edge, problem_document, task


def schedule_of(document: dict, assignment: list[int], keys: list[float] | None = None):
    problem = parse_problem(document)
    keys = keys if keys is not None else list(np.linspace(0, 1, len(problem.tasks)))
    return decode(problem.arrays, assignment, keys)


def test_a_transfer_between_devices_costs_latency_plus_bytes_over_bandwidth() -> None:
    document = problem_document(
        [task("a", 2.0), task("b", 4.0)],
        [edge("a", "b", megabytes=1.0)],
        [device("d0"), device("d1", gflops=2.0, power_idle_w=5.0, power_busy_w=20.0)],
    )
    schedule = schedule_of(document, [0, 1])
    # b waits for a (2 s), then 100 ms latency + 1 MB at 1 MB/s; it runs 4e9 / 2e9 = 2 s.
    assert schedule.start_s.tolist() == pytest.approx([0.0, 3.1])
    assert schedule.finish_s.tolist() == pytest.approx([2.0, 5.1])
    makespan, energy, cost, bandwidth = schedule.objectives
    assert makespan == pytest.approx(5.1)
    # d0: 2 s busy at 50 W + 3.1 s idle at 10 W; d1: 2 s at 20 W + 3.1 s at 5 W; 1 MB x 2 J.
    assert energy == pytest.approx(100 + 31 + 40 + 15.5 + 2.0)
    # 3.6 $/h is 0.001 $/s, for 4 busy seconds in all.
    assert cost == pytest.approx(0.004)
    assert bandwidth == pytest.approx(1.0)
    assert schedule.feasible


def test_on_one_device_a_transfer_is_free_and_unused_devices_cost_nothing() -> None:
    document = problem_document([task("a", 2.0), task("b", 3.0)], [edge("a", "b", 50.0)])
    schedule = schedule_of(document, [1, 1])
    assert schedule.finish_s.tolist() == pytest.approx([2.0, 5.0])
    makespan, energy, cost, bandwidth = schedule.objectives
    assert makespan == pytest.approx(5.0)
    assert energy == pytest.approx(5.0 * 50.0)  # d1 is busy throughout; d0 sleeps
    assert cost == pytest.approx(0.005)
    assert bandwidth == 0.0


def test_a_later_task_is_inserted_into_an_earlier_gap_that_fits() -> None:
    # a runs on d1; c waits 0.1 + 3 s for a's output on d0, which leaves d0 idle until 4.1.
    document = problem_document(
        [task("a", 1.0), task("c", 1.0), task("fits", 2.0), task("too_long", 5.0)],
        [edge("a", "c", megabytes=3.0)],
    )
    schedule = schedule_of(document, [1, 0, 0, 0], keys=[0.0, 0.1, 0.2, 0.3])
    start = dict(zip(["a", "c", "fits", "too_long"], schedule.start_s.tolist(), strict=True))
    assert start == pytest.approx({"a": 0.0, "c": 4.1, "fits": 0.0, "too_long": 5.1})
    assert schedule.objectives[0] == pytest.approx(10.1)


def test_keys_order_the_ready_tasks_of_a_device() -> None:
    document = problem_document([task("x", 1.0), task("y", 2.0)], [])
    first_x = schedule_of(document, [0, 0], keys=[0.2, 0.7])
    first_y = schedule_of(document, [0, 0], keys=[0.9, 0.1])
    assert first_x.start_s.tolist() == pytest.approx([0.0, 1.0])
    assert first_y.start_s.tolist() == pytest.approx([2.0, 0.0])


def test_a_key_never_lets_a_task_start_before_its_inputs() -> None:
    document = problem_document(
        [task("first", 1.0), task("second", 1.0)], [edge("first", "second")]
    )
    schedule = schedule_of(document, [0, 0], keys=[0.9, 0.1])
    assert schedule.start_s.tolist() == pytest.approx([0.0, 1.0])


def test_deadline_lateness_is_summed() -> None:
    document = problem_document(
        [task("a", 2.0, deadline_s=1.5), task("b", 1.0, deadline_s=3.5), task("c", 1.0)],
        [edge("a", "b"), edge("b", "c")],
    )
    schedule = schedule_of(document, [0, 0, 0])
    # a finishes at 2 (0.5 s late), b at 3 (on time).
    assert schedule.deadline_violation_s == pytest.approx(0.5)
    assert not schedule.feasible


def test_decoding_a_population_matches_decoding_each_solution() -> None:
    document = problem_document(
        [task(f"t{i}", 0.5 + i % 3) for i in range(8)],
        [edge("t0", "t3"), edge("t1", "t3"), edge("t3", "t6", 2.0), edge("t2", "t7")],
        [device("d0"), device("d1", gflops=3.0), device("d2", tier="cloud", gflops=10.0)],
    )
    problem = parse_problem(document)
    rng = np.random.default_rng(4)
    assignments = rng.integers(0, 3, size=(20, 8))
    keys = rng.random((20, 8))
    objectives, lateness = decode_population(problem.arrays, assignments, keys)
    for row in range(20):
        one = decode(problem.arrays, assignments[row], keys[row])
        assert objectives[row].tolist() == one.objectives.tolist()
        assert lateness[row] == one.deadline_violation_s
