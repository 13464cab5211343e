"""`solve`: baselines, the evolutionary search, and the result document.

The result's keys are documented in docs/scheduling-format.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np

from scheduling.engine.baselines import BASELINES, Placement
from scheduling.engine.decoder import Schedule, decode
from scheduling.engine.problem import Problem
from scheduling.engine.quality import (
    Matrix,
    Normalisation,
    as_mapping,
    knee_index,
    lower_bounds,
    objective_columns,
    thin_front,
    weakly_dominated_by,
)
from scheduling.engine.search import (
    ALGORITHMS,
    Archive,
    PlacementProblem,
    build_algorithm,
    check_algorithm,
    join,
    run_search,
    split,
)

RESULT_FORMAT = "triad-scheduling-result/1"
Progress = dict[str, Any]


class SolveCancelled(Exception):
    """Raised out of `solve` when `should_stop` asked for it."""


@dataclass(frozen=True)
class SolveOptions:
    algorithm: str = "nsga2"
    generations: int = 100
    population: int = 100
    seed: int = 1
    # Largest front reported; the archive is thinned by crowding beyond it, always keeping
    # a solution that dominates each baseline.
    max_front: int = 100

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: choose from {', '.join(ALGORITHMS)}")
        for name in ("generations", "population", "max_front"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.population < 4:
            raise ValueError("population: must be at least 4")
        if self.seed < 0:
            raise ValueError("seed: must be >= 0")


def solve(
    problem: Problem,
    options: SolveOptions | None = None,
    on_generation: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Search the Pareto front of `problem` and measure it against the baselines."""
    options = options or SolveOptions()
    check_algorithm(options.algorithm, len(problem.objectives))
    started = perf_counter()
    arrays = problem.arrays
    columns = objective_columns(problem.objectives)
    baselines = _baseline_schedules(problem, options.seed)
    bounds = lower_bounds(arrays)
    baseline_points = np.array([s.objectives[columns] for _, s in baselines.values()])
    # Convergence is tracked on a scale fixed before the search: lower bounds to the worst
    # baseline, so the figures of successive generations compare.
    progress_scale = Normalisation(
        np.array([bounds[name] for name in problem.objectives]), baseline_points.max(axis=0)
    )
    history: list[Progress] = []

    def after_generation(generation: int, archive: Archive) -> None:
        if should_stop is not None and should_stop():
            raise SolveCancelled
        entry = _progress(problem, generation, archive, progress_scale)
        history.append(entry)
        if on_generation is not None:
            on_generation(entry)

    search_problem = PlacementProblem(arrays, columns)
    seeds = np.vstack([join(placement) for placement, _ in baselines.values()])
    algorithm = build_algorithm(options.algorithm, options.population, len(columns), seeds)
    # The baselines start the archive whatever the population size (the first population
    # may be too small to hold them all), so the front always covers them.
    archive = Archive.empty(search_problem.n_var, search_problem.n_obj)
    archive.add(
        seeds,
        baseline_points,
        np.array([s.deadline_violation_s for _, s in baselines.values()]),
        evaluated=False,
    )
    archive = run_search(
        search_problem, algorithm, options.generations, options.seed, after_generation, archive
    )
    return _result(problem, options, archive, baselines, bounds, history, started)


def _baseline_schedules(problem: Problem, seed: int) -> dict[str, tuple[Placement, Schedule]]:
    rng = np.random.default_rng([seed, 1])
    schedules = {}
    for name, factory in BASELINES.items():
        placement = factory(problem.arrays, rng)
        if placement is not None:
            schedule = decode(problem.arrays, placement.assignment, placement.keys)
            schedules[name] = (placement, schedule)
    return schedules


def _progress(
    problem: Problem, generation: int, archive: Archive, scale: Normalisation
) -> Progress:
    best = archive.F.min(axis=0) if len(archive.F) else None
    return {
        "generation": generation,
        "evaluations": archive.evaluations,
        "front_size": len(archive.F),
        "hypervolume": scale.hypervolume(archive.F),
        "best": None if best is None else as_mapping(problem.objectives, best),
    }


def _result(
    problem: Problem,
    options: SolveOptions,
    archive: Archive,
    baselines: Mapping[str, tuple[Placement, Schedule]],
    bounds: dict[str, float],
    history: list[Progress],
    started: float,
) -> dict[str, Any]:
    columns = objective_columns(problem.objectives)
    baseline_points = {name: s.objectives[columns] for name, (_, s) in baselines.items()}
    must_cover = [p for name, p in baseline_points.items() if baselines[name][1].feasible]
    chosen = thin_front(archive.F, options.max_front, _covering(archive.F, must_cover))
    chosen = chosen[np.argsort(archive.F[chosen, 0], kind="stable")]
    front_points = archive.F[chosen]
    schedules = [_decode_row(problem, x) for x in archive.X[chosen]]
    scale = Normalisation.spanning(front_points, np.array(list(baseline_points.values())))
    return {
        "format": RESULT_FORMAT,
        "objectives": list(problem.objectives),
        "algorithm": options.algorithm,
        "generations": options.generations,
        "population": options.population,
        "seed": options.seed,
        "front": [_entry(problem, s, bounds) for s in schedules],
        "baselines": {name: _entry(problem, s, bounds) for name, (_, s) in baselines.items()},
        "hypervolume": {
            "front": scale.hypervolume(front_points),
            "baselines": {
                name: scale.hypervolume(point[None, :]) for name, point in baseline_points.items()
            },
            "all_baselines": scale.hypervolume(np.array(list(baseline_points.values()))),
            "reference_point": as_mapping(problem.objectives, scale.reference_point()),
            "ideal_point": as_mapping(problem.objectives, scale.ideal),
        },
        "lower_bounds": bounds,
        "knee": knee_index(front_points) if len(front_points) else None,
        "front_dominates_baselines": all(
            weakly_dominated_by(point, front_points) for point in must_cover
        ),
        "evaluations": archive.evaluations,
        "wall_time_s": perf_counter() - started,
        "history": history,
    }


def _covering(front: Matrix, baseline_points: list[Matrix]) -> np.ndarray:
    """Marks, for each baseline point, the first front point that weakly dominates it."""
    keep = np.zeros(len(front), dtype=bool)
    for point in baseline_points:
        for i, candidate in enumerate(front):
            if weakly_dominated_by(point, candidate[None, :]):
                keep[i] = True
                break
    return keep


def _decode_row(problem: Problem, x: Matrix) -> Schedule:
    assignment, keys = split(x[None, :], len(problem.tasks))
    return decode(problem.arrays, assignment[0], keys[0])


def _entry(problem: Problem, schedule: Schedule, bounds: Mapping[str, float]) -> dict[str, Any]:
    columns = objective_columns(problem.objectives)
    tasks, devices = problem.tasks, problem.devices
    order = np.lexsort((schedule.assignment, schedule.start_s))
    objectives = as_mapping(problem.objectives, schedule.objectives[columns])
    return {
        "objectives": objectives,
        # How far from what no schedule can beat; null where the bound is 0.
        "ratio_to_lower_bound": {
            name: value / bounds[name] if bounds[name] > 0 else None
            for name, value in objectives.items()
        },
        "assignment": {
            t.id: devices[d].id for t, d in zip(tasks, schedule.assignment, strict=True)
        },
        "timeline": [
            {
                "task": tasks[t].id,
                "device": devices[schedule.assignment[t]].id,
                "start": float(schedule.start_s[t]),
                "finish": float(schedule.finish_s[t]),
            }
            for t in order
        ],
        "feasible": schedule.feasible,
        "deadline_violation_s": schedule.deadline_violation_s,
    }
