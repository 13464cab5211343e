"""The scheduling engine: pure Python (numpy, numba, pymoo), no Django.

A problem document (docs/scheduling-format.md) is parsed into a `Problem`; `solve` returns
the Pareto front, the baselines and the quality measures as a result document.
"""

from scheduling.engine.problem import (
    FORMAT,
    OBJECTIVES,
    TIERS,
    Problem,
    ProblemError,
    parse_problem,
    parse_workload,
)
from scheduling.engine.solve import RESULT_FORMAT, SolveCancelled, SolveOptions, solve

__all__ = [
    "FORMAT",
    "OBJECTIVES",
    "RESULT_FORMAT",
    "TIERS",
    "Problem",
    "ProblemError",
    "SolveCancelled",
    "SolveOptions",
    "parse_problem",
    "parse_workload",
    "solve",
]
