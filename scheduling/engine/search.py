"""The evolutionary search: a pymoo problem over (device, key) genes and its operators.

A solution is `2n` numbers: the device index of each task, then its priority key in [0, 1].
Operators keep a task's device and key together, only ever propose allowed devices, and a
repair maps anything else onto an allowed device, so memory and pinning always hold.
Deadlines are a constraint (total lateness <= 0) that pymoo's feasibility-first ranking
handles. The search keeps an archive of every feasible non-dominated solution it meets:
NSGA's crowding may drop a point from the population, never from the archive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np
import numpy.typing as npt
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.core.algorithm import Algorithm
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import HashDuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem as PymooProblem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.util.ref_dirs import get_reference_directions

from scheduling.engine.baselines import Placement, random_assignment
from scheduling.engine.decoder import decode_population
from scheduling.engine.problem import ProblemArrays
from scheduling.engine.quality import non_dominated

ALGORITHMS = ("nsga2", "nsga3")
Matrix = npt.NDArray[np.float64]


class PlacementProblem(PymooProblem):  # type: ignore[misc]
    """Objectives and deadline lateness of whole populations, decoded in compiled code."""

    def __init__(self, arrays: ProblemArrays, columns: list[int]) -> None:
        n, m = arrays.n_tasks, arrays.n_devices
        upper = np.concatenate([np.full(n, m - 1.0), np.ones(n)])
        super().__init__(n_var=2 * n, n_obj=len(columns), n_ieq_constr=1, xl=0.0, xu=upper)
        self.arrays = arrays
        self.columns = columns
        # Cumulative move weights per task over the devices it may use (0 elsewhere).
        self.speed_cdf = _cumulative(arrays.allowed / arrays.compute_s)
        self.efficiency_cdf = _cumulative(
            arrays.allowed / np.maximum(arrays.compute_s * arrays.power_busy_w, 1e-12)
        )

    def _evaluate(self, X: Matrix, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        assignment, keys = split(X, self.arrays.n_tasks)
        objectives, lateness = decode_population(self.arrays, assignment, keys)
        out["F"] = objectives[:, self.columns]
        out["G"] = lateness[:, None]


def _cumulative(weights: Matrix) -> Matrix:
    return np.cumsum(np.where(np.isfinite(weights), weights, 0.0), axis=1)


def split(X: Matrix, n: int) -> tuple[npt.NDArray[np.int64], Matrix]:
    return np.rint(X[:, :n]).astype(np.int64), X[:, n:]


def join(placement: Placement) -> Matrix:
    return np.concatenate([placement.assignment.astype(np.float64), placement.keys])


class SeededSampling(Sampling):  # type: ignore[misc]
    """The baselines' solutions first, then random allowed placements with random keys."""

    def __init__(self, seeds: Matrix) -> None:
        super().__init__()
        self.seeds = seeds

    def _do(self, problem: PlacementProblem, n_samples: int, *args: Any, **kwargs: Any) -> Matrix:
        rng: np.random.Generator = kwargs["random_state"]
        arrays = problem.arrays
        count = max(n_samples - len(self.seeds), 0)
        random_rows = np.hstack(
            [
                random_assignment(arrays.allowed, rng, count).astype(np.float64),
                rng.random((count, arrays.n_tasks)),
            ]
        )
        return np.vstack([self.seeds[:n_samples], random_rows])


class TaskUniformCrossover(Crossover):  # type: ignore[misc]
    """Each task takes its device and its key together from one parent or the other."""

    def __init__(self, prob: float = 0.9) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)

    def _do(self, problem: PlacementProblem, X: Matrix, *args: Any, **kwargs: Any) -> Matrix:
        rng: np.random.Generator = kwargs["random_state"]
        _, matings, n_var = X.shape
        n = n_var // 2
        from_first = rng.random((matings, n)) < 0.5
        mask = np.hstack([from_first, from_first])
        first = np.where(mask, X[0], X[1])
        second = np.where(mask, X[1], X[0])
        return np.stack([first, second])


class PlacementMutation(Mutation):  # type: ignore[misc]
    """Moves about one task per child to another device, and nudges about one key.

    A move picks the new device in one of three ways, equally often: weighted by speed
    (favours makespan), weighted by energy efficiency (favours energy), or the device of one
    of the task's neighbours (saves a transfer). Uniform picks would mostly land on the many
    slow end devices of a city fleet and rarely help.
    """

    def __init__(self) -> None:
        super().__init__(prob=1.0)

    def _do(self, problem: PlacementProblem, X: Matrix, *args: Any, **kwargs: Any) -> Matrix:
        rng: np.random.Generator = kwargs["random_state"]
        n = problem.arrays.n_tasks
        X = X.copy()
        rows, tasks = np.nonzero(rng.random((len(X), n)) < 1.0 / n)
        ways = rng.integers(0, 3, len(rows))
        draws = rng.random(len(rows))
        for row, t, way, draw in zip(rows, tasks, ways, draws, strict=True):
            device = self._pick(problem, X[row], int(t), int(way), float(draw))
            if device is not None:
                X[row, t] = device
        nudged = rng.random((len(X), n)) < 1.0 / n
        step = rng.normal(0.0, 0.1, (len(X), n))
        X[:, n:] = np.clip(np.where(nudged, X[:, n:] + step, X[:, n:]), 0.0, 1.0)
        return X

    @staticmethod
    def _pick(problem: PlacementProblem, x: Matrix, t: int, way: int, draw: float) -> int | None:
        if way < 2:
            cdf = (problem.speed_cdf if way == 0 else problem.efficiency_cdf)[t]
            return int(np.searchsorted(cdf, draw * cdf[-1], side="right"))
        arrays = problem.arrays
        neighbours = np.concatenate(
            [
                arrays.pred_task[arrays.pred_ptr[t] : arrays.pred_ptr[t + 1]],
                arrays.succ_task[arrays.succ_ptr[t] : arrays.succ_ptr[t + 1]],
            ]
        )
        if not len(neighbours):
            return None
        device = int(x[neighbours[int(draw * len(neighbours))]])
        return device if arrays.allowed[t, device] else None


class AllowedDeviceRepair(Repair):  # type: ignore[misc]
    """Rounds device genes and moves a task off a device it may not use.

    The replacement is a deterministic function of the gene, so seeded runs reproduce.
    """

    def _do(self, problem: PlacementProblem, X: Matrix, **kwargs: Any) -> Matrix:
        arrays = problem.arrays
        n = arrays.n_tasks
        devices = np.clip(np.rint(X[:, :n]), 0, arrays.n_devices - 1).astype(np.int64)
        rows, tasks = np.nonzero(~arrays.allowed[np.arange(n)[None, :], devices])
        for row, t in zip(rows, tasks, strict=True):
            choices = np.flatnonzero(arrays.allowed[t])
            devices[row, t] = choices[(devices[row, t] * 7919 + t) % len(choices)]
        X = X.copy()
        X[:, :n] = devices
        return X


@dataclass
class Archive:
    """Every feasible non-dominated solution met so far, unique by objective vector."""

    X: Matrix
    F: Matrix
    evaluations: int = 0
    _seen: set[bytes] = field(default_factory=set)

    @classmethod
    def empty(cls, n_var: int, n_obj: int) -> Archive:
        return cls(np.empty((0, n_var)), np.empty((0, n_obj)))

    def add(self, X: Matrix, F: Matrix, lateness: Matrix, *, evaluated: bool = True) -> None:
        """Merge solutions in; `evaluated` counts them as the search's evaluations."""
        self.evaluations += len(X) if evaluated else 0
        feasible = lateness.ravel() <= 0.0
        X = np.vstack([self.X, X[feasible]])
        F = np.vstack([self.F, F[feasible]])
        _, first = np.unique(F, axis=0, return_index=True)
        first.sort()
        X, F = X[first], F[first]
        keep = non_dominated(F)
        keep.sort()
        self.X, self.F = X[keep], F[keep]


def check_algorithm(name: str, n_obj: int) -> None:
    """Refuse an algorithm that cannot run on this many objectives (ValueError)."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
    if name == "nsga3" and n_obj < 2:
        # Reference directions need two objectives or more.
        raise ValueError("NSGA-III needs at least two objectives; use NSGA-II.")


def build_algorithm(name: str, population: int, n_obj: int, seeds: Matrix) -> Algorithm:
    check_algorithm(name, n_obj)
    operators = {
        "sampling": SeededSampling(seeds),
        "crossover": TaskUniformCrossover(),
        "mutation": PlacementMutation(),
        "repair": AllowedDeviceRepair(),
        "eliminate_duplicates": HashDuplicateElimination(),
    }
    if name == "nsga2":
        return NSGA2(pop_size=population, **operators)
    return NSGA3(ref_dirs=reference_directions(n_obj, population), pop_size=population, **operators)


def reference_directions(n_obj: int, population: int) -> Matrix:
    """Das-Dennis directions, as many partitions as fit in the population."""
    partitions = 1
    while comb(partitions + 1 + n_obj - 1, n_obj - 1) <= population:
        partitions += 1
    directions: Matrix = get_reference_directions("das-dennis", n_obj, n_partitions=partitions)
    return directions


def run_search(
    problem: PlacementProblem,
    algorithm: Algorithm,
    generations: int,
    seed: int,
    after_generation: Callable[[int, Archive], None],
    archive: Archive,
) -> Archive:
    """Run `generations` generations, adding what they find to `archive` and calling
    `after_generation` after each one."""
    algorithm.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    generation = 0
    while algorithm.has_next():
        offspring = algorithm.ask()
        algorithm.evaluator.eval(problem, offspring)
        algorithm.tell(infills=offspring)
        archive.add(offspring.get("X"), offspring.get("F"), offspring.get("G"))
        generation += 1
        after_generation(generation, archive)
    return archive
