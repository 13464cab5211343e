"""HEFT reproduces the paper; the other baselines respect tiers, pins and memory."""

from __future__ import annotations

import numpy as np
import pytest

from scheduling.engine import parse_problem
from scheduling.engine.baselines import (
    all_cloud,
    all_on_end,
    greedy_energy,
    heft,
    optimistic_costs,
    peft,
    random_placement,
    upward_ranks,
)
from scheduling.engine.decoder import decode
from scheduling.engine.generate import video_pipeline
from tests.engine import topcuoglu
from tests.engine.helpers import device, edge, problem_document, task


def test_heft_ranks_match_the_paper() -> None:
    problem = parse_problem(topcuoglu.problem_document())
    ranks = dict(zip((t.id for t in problem.tasks), upward_ranks(problem.arrays), strict=True))
    paper = {
        "T1": 108.0,
        "T2": 77.0,
        "T3": 80.0,
        "T4": 80.0,
        "T5": 69.0,
        "T6": 63.333,
        "T7": 42.667,
        "T8": 35.667,
        "T9": 44.333,
        "T10": 14.667,
    }
    assert ranks == pytest.approx(paper, abs=1e-3)


def test_heft_reproduces_the_papers_schedule_with_makespan_80() -> None:
    problem = parse_problem(topcuoglu.problem_document())
    placement = heft(problem.arrays)
    schedule = decode(problem.arrays, placement.assignment, placement.keys)
    got = {
        t.id: (topcuoglu.PROCESSORS[d], start, finish)
        for t, d, start, finish in zip(
            problem.tasks, schedule.assignment, schedule.start_s, schedule.finish_s, strict=True
        )
    }
    assert got == topcuoglu.HEFT_SCHEDULE
    assert schedule.objectives[0] == 80.0


def tiered_document() -> dict:
    devices = [
        device("cloud-0", tier="cloud", gflops=100.0),
        device("edge-0", tier="edge", gflops=10.0),
        device("end-0", tier="end", gflops=1.0, memory_mb=512),
        device("end-1", tier="end", gflops=1.0, memory_mb=512),
    ]
    tasks = [
        task("capture", 0.1, pinned_to="end-1"),
        task("big", 5.0, memory_mb=2048),
        task("small", 1.0),
        task("report", 0.1, pinned_to="edge"),
    ]
    edges = [edge("capture", "big", 5.0), edge("big", "small"), edge("small", "report")]
    return problem_document(tasks, edges, devices)


def device_names(problem, assignment) -> list[str]:  # type: ignore[no-untyped-def]
    return [problem.devices[d].id for d in assignment]


def test_all_cloud_keeps_pins_and_puts_the_rest_in_the_cloud() -> None:
    problem = parse_problem(tiered_document())
    placement = all_cloud(problem.arrays)
    assert placement is not None
    assert device_names(problem, placement.assignment) == ["end-1", "cloud-0", "cloud-0", "edge-0"]


def test_all_on_end_is_absent_when_an_end_device_cannot_hold_a_task() -> None:
    problem = parse_problem(tiered_document())
    assert all_on_end(problem.arrays) is None


def test_greedy_energy_picks_the_least_energy_device() -> None:
    document = problem_document(
        [task("a", 1.0)],
        [],
        [
            device("hungry", power_busy_w=200.0, gflops=4.0),
            device("frugal", power_idle_w=1.0, power_busy_w=5.0),
        ],
    )
    problem = parse_problem(document)
    # hungry: 0.25 s x 200 W = 50 J; frugal: 1 s x 5 W = 5 J.
    assert device_names(problem, greedy_energy(problem.arrays).assignment) == ["frugal"]
    assert device_names(problem, heft(problem.arrays).assignment) == ["hungry"]


def test_peft_looks_ahead_with_the_optimistic_cost_table() -> None:
    # b runs 1 s on d0 and 3 s on d1 (measured runtimes); a transfer between the two takes
    # 0.1 s latency + 1 MB at 1 MB/s.
    document = problem_document(
        [task("a", 1.0), task("b", 1.0, runtime_s={"d0": 1.0, "d1": 3.0})], [edge("a", "b")]
    )
    problem = parse_problem(document)
    table = optimistic_costs(problem.arrays)
    # From d0, b runs best on d0 (1 s); from d1, moving b to d0 costs 1.1 + 1 < 3 on d1.
    assert table.ravel().tolist() == pytest.approx([1.0, 2.1, 0.0, 0.0])
    assert device_names(problem, peft(problem.arrays).assignment) == ["d0", "d0"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_baseline_uses_only_allowed_devices(seed: int) -> None:
    problem = parse_problem(video_pipeline(cameras=6, devices=12, seed=seed))
    arrays = problem.arrays
    rng = np.random.default_rng(seed)
    for placement in (
        heft(arrays),
        peft(arrays),
        all_cloud(arrays),
        greedy_energy(arrays),
        random_placement(arrays, rng),
    ):
        assert placement is not None
        assert arrays.allowed[np.arange(arrays.n_tasks), placement.assignment].all()
