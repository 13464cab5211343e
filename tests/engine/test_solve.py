"""`solve`: constraints hold, seeds reproduce, and the front beats the baselines."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from scheduling.engine import SolveCancelled, SolveOptions, parse_problem, solve
from scheduling.engine.generate import layered, montage, video_pipeline
from scheduling.engine.quality import knee_index, thin_front, weighted_choice
from tests.engine.helpers import device, edge, problem_document, task

SMALL = SolveOptions(generations=15, population=24, seed=3)


@pytest.fixture(scope="module")
def pipeline_with_deadline() -> Any:
    document = video_pipeline(cameras=4, devices=9, seed=2, alert_deadline_s=8.0)
    return parse_problem(document)


@pytest.fixture(scope="module")
def result(pipeline_with_deadline: Any) -> dict[str, Any]:
    return solve(pipeline_with_deadline, SMALL)


def test_the_result_has_the_documented_keys(result: dict[str, Any]) -> None:
    assert {
        "format",
        "objectives",
        "algorithm",
        "generations",
        "population",
        "seed",
        "front",
        "baselines",
        "hypervolume",
        "lower_bounds",
        "knee",
        "front_dominates_baselines",
        "evaluations",
        "wall_time_s",
        "history",
    } <= result.keys()
    assert set(result["baselines"]) == {
        "heft",
        "peft",
        "all_cloud",
        "all_on_end",
        "greedy_energy",
        "random",
    }
    assert len(result["history"]) == SMALL.generations
    assert result["front"], "the front is empty"


def test_every_returned_solution_respects_memory_pins_and_deadlines(
    pipeline_with_deadline: Any, result: dict[str, Any]
) -> None:
    devices = {d.id: d for d in pipeline_with_deadline.devices}
    tasks = {t.id: t for t in pipeline_with_deadline.tasks}
    for solution in result["front"]:
        assert solution["feasible"] and solution["deadline_violation_s"] == 0.0
        assert solution["assignment"].keys() == tasks.keys()
        for task_id, device_id in solution["assignment"].items():
            task, device = tasks[task_id], devices[device_id]
            assert task.memory_mb <= device.memory_mb
            if task.pinned_to is not None:
                assert task.pinned_to in (device.id, device.tier)
        finish = {slot["task"]: slot["finish"] for slot in solution["timeline"]}
        assert finish["alert"] <= 8.0


def test_timelines_list_each_task_once_with_no_overlap_on_a_device(
    result: dict[str, Any],
) -> None:
    for solution in [*result["front"], *result["baselines"].values()]:
        timeline = solution["timeline"]
        assert sorted(s["task"] for s in timeline) == sorted(solution["assignment"])
        by_device: dict[str, list[tuple[float, float]]] = {}
        for slot in timeline:
            assert slot["device"] == solution["assignment"][slot["task"]]
            by_device.setdefault(slot["device"], []).append((slot["start"], slot["finish"]))
        for slots in by_device.values():
            slots.sort()
            assert all(a[1] <= b[0] + 1e-12 for a, b in itertools.pairwise(slots))
        assert solution["objectives"]["makespan"] == pytest.approx(
            max(s["finish"] for s in timeline)
        )


def test_no_solution_beats_a_lower_bound(result: dict[str, Any]) -> None:
    bounds = result["lower_bounds"]
    for solution in [*result["front"], *result["baselines"].values()]:
        for name, value in solution["objectives"].items():
            assert value >= bounds[name] * (1 - 1e-9), name


def test_the_front_weakly_dominates_every_baseline_and_beats_heft(result: dict[str, Any]) -> None:
    assert result["front_dominates_baselines"] is True
    best_makespan = min(s["objectives"]["makespan"] for s in result["front"])
    heft = result["baselines"]["heft"]
    if heft["feasible"]:
        assert best_makespan <= heft["objectives"]["makespan"]
    assert result["hypervolume"]["front"] >= max(result["hypervolume"]["baselines"].values())


def test_a_seed_reproduces_its_run_exactly(pipeline_with_deadline: Any) -> None:
    first = solve(pipeline_with_deadline, SMALL)
    again = solve(pipeline_with_deadline, SMALL)
    other = solve(pipeline_with_deadline, SolveOptions(generations=15, population=24, seed=4))
    for volatile in ("wall_time_s",):
        first.pop(volatile), again.pop(volatile), other.pop(volatile)
    assert first == again
    assert other["front"] != first["front"]


def test_nsga3_handles_four_objectives() -> None:
    problem = parse_problem(montage(tasks=40, devices=10, seed=5)).with_objectives(
        ["makespan", "energy", "cost", "bandwidth"]
    )
    result = solve(problem, SolveOptions(algorithm="nsga3", generations=10, population=40))
    assert result["front"] and result["front_dominates_baselines"]
    assert set(result["front"][0]["objectives"]) == {"makespan", "energy", "cost", "bandwidth"}


def test_progress_is_reported_each_generation_and_a_stop_cancels(
    pipeline_with_deadline: Any,
) -> None:
    seen: list[dict[str, Any]] = []
    with pytest.raises(SolveCancelled):
        solve(
            pipeline_with_deadline,
            SMALL,
            on_generation=seen.append,
            should_stop=lambda: len(seen) >= 3,
        )
    assert [p["generation"] for p in seen] == [1, 2, 3]
    assert seen[0]["evaluations"] == SMALL.population
    hypervolumes = [p["hypervolume"] for p in seen]
    assert hypervolumes == sorted(hypervolumes)  # the archive only ever improves


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"algorithm": "simplex"}, "algorithm"),
        ({"generations": 0}, "generations"),
        ({"population": 2}, "population"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SolveOptions(**options)


FRONT = np.array([[0.0, 10.0], [1.0, 4.0], [2.0, 2.5], [6.0, 1.0], [10.0, 0.0]])


def test_the_knee_is_nearest_the_ideal_point_after_scaling() -> None:
    assert knee_index(FRONT) == 2


def test_a_weighted_choice_follows_its_weights() -> None:
    assert weighted_choice(FRONT, [1.0, 0.0]) == 0
    assert weighted_choice(FRONT, [0.0, 1.0]) == 4


def test_thinning_keeps_extremes_and_marked_points() -> None:
    keep = np.array([False, False, True, False, False])
    chosen = thin_front(FRONT, 3, keep)
    assert sorted(chosen.tolist()) == [0, 2, 4]


def test_nsga3_on_one_objective_is_refused(pipeline_with_deadline: Any) -> None:
    one = pipeline_with_deadline.with_objectives(["makespan"])
    with pytest.raises(ValueError, match="NSGA-III needs at least two objectives"):
        solve(one, SolveOptions(algorithm="nsga3", generations=1, population=8))


def test_nsga2_on_one_objective_finds_a_makespan_at_most_hefts(pipeline_with_deadline: Any) -> None:
    one = pipeline_with_deadline.with_objectives(["makespan"])
    result = solve(one, SolveOptions(generations=5, population=8))
    assert len(result["front"]) == 1
    heft = result["baselines"]["heft"]
    if heft["feasible"]:
        assert result["front"][0]["objectives"]["makespan"] <= heft["objectives"]["makespan"]


def test_a_device_drawing_no_busy_power_gives_finite_bounds_and_json() -> None:
    document = problem_document(
        [task("big", memory_mb=2000), task("small", memory_mb=10)],
        [edge("big", "small")],
        [device("server"), device("sensor", memory_mb=512, power_idle_w=0, power_busy_w=0)],
    )
    result = solve(parse_problem(document), SolveOptions(generations=3, population=8))
    json.dumps(result, allow_nan=False)  # raises on NaN or infinity
    assert result["lower_bounds"]["energy"] == pytest.approx(50.0)  # big on the server only


def test_every_baseline_is_covered_even_by_a_tiny_population() -> None:
    problem = parse_problem(layered(tasks=8, devices=4, seed=9))
    result = solve(problem, SolveOptions(generations=1, population=4))
    assert result["front_dominates_baselines"] is True


def test_each_solution_carries_its_ratio_to_the_lower_bounds(result: dict[str, Any]) -> None:
    bounds = result["lower_bounds"]
    for entry in [*result["front"], *result["baselines"].values()]:
        for name, ratio in entry["ratio_to_lower_bound"].items():
            if bounds[name] > 0:
                assert ratio == pytest.approx(entry["objectives"][name] / bounds[name])
                assert ratio >= 1 - 1e-9
            else:
                assert ratio is None
