"""Command line: ``python -m scheduling solve|generate|import-wfformat``.

Works without the server. Exit codes: 0 success, 2 bad arguments or a refused input (the
message names the field), 1 anything else. A refused input writes no output file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scheduling.engine.generate import SHAPES, with_fleet
from scheduling.engine.problem import OBJECTIVES, ProblemError, parse_problem
from scheduling.engine.quality import weighted_choice
from scheduling.engine.search import ALGORITHMS, check_algorithm
from scheduling.engine.solve import Progress, SolveOptions, solve
from scheduling.engine.wfformat import WfFormatError, workload_from_wfformat


class UsageError(Exception):
    """Bad input from the command line; the message names the argument or field."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (UsageError, ProblemError, WfFormatError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scheduling", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    solve_cmd = commands.add_parser("solve", help="search the Pareto front of a problem")
    solve_cmd.add_argument("problem", type=Path, help="problem JSON (docs/scheduling-format.md)")
    solve_cmd.add_argument("--objectives", type=_objectives, help="e.g. makespan,energy,cost")
    solve_cmd.add_argument("--algorithm", choices=ALGORITHMS, default="nsga2")
    solve_cmd.add_argument("--generations", type=_positive, default=100)
    solve_cmd.add_argument("--population", type=_positive, default=100)
    solve_cmd.add_argument("--seed", type=_seed, default=1)
    solve_cmd.add_argument("--max-front", type=_positive, default=100)
    solve_cmd.add_argument(
        "--weights",
        type=_weights,
        help="also pick the front solution with the least weighted sum of scaled objectives, "
        "e.g. makespan=2,energy=1 (objectives left out weigh 0)",
    )
    solve_cmd.add_argument("--progress", action="store_true", help="a line per generation")
    solve_cmd.add_argument("--out", type=Path, help="result JSON (default: stdout)")
    solve_cmd.set_defaults(run=_solve)

    generate_cmd = commands.add_parser("generate", help="write a generated problem instance")
    generate_cmd.add_argument("--shape", choices=sorted(SHAPES), required=True)
    generate_cmd.add_argument("--tasks", type=_positive, required=True)
    generate_cmd.add_argument("--devices", type=_positive, required=True)
    generate_cmd.add_argument("--seed", type=_seed, default=1)
    generate_cmd.add_argument("--out", type=Path, help="problem JSON (default: stdout)")
    generate_cmd.set_defaults(run=_generate)

    import_cmd = commands.add_parser(
        "import-wfformat", help="turn a WfCommons WfFormat workflow into a problem"
    )
    import_cmd.add_argument("workflow", type=Path, help="WfFormat JSON")
    import_cmd.add_argument("--devices", type=_positive, required=True, help="generated fleet")
    import_cmd.add_argument("--seed", type=_seed, default=1)
    import_cmd.add_argument("--out", type=Path, help="problem JSON (default: stdout)")
    import_cmd.set_defaults(run=_import_wfformat)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _objectives(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in OBJECTIVES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown objective(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(OBJECTIVES)}"
        )
    return names


def _weights(text: str) -> dict[str, float]:
    weights = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in OBJECTIVES:
            raise argparse.ArgumentTypeError(
                f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: weight {value!r} is not a number") from None
        if not (math.isfinite(weights[name]) and weights[name] >= 0):
            raise argparse.ArgumentTypeError(f"{name}: weight must be a finite number >= 0")
    return weights


def _solve(args: argparse.Namespace) -> None:
    problem = parse_problem(_read_json(args.problem, "problem"))
    if args.objectives:
        problem = problem.with_objectives(args.objectives)
    try:
        options = SolveOptions(
            algorithm=args.algorithm,
            generations=args.generations,
            population=args.population,
            seed=args.seed,
            max_front=args.max_front,
        )
        check_algorithm(options.algorithm, len(problem.objectives))
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.weights and not set(args.weights) <= set(problem.objectives):
        extra = ", ".join(sorted(set(args.weights) - set(problem.objectives)))
        raise UsageError(f"--weights: {extra} is not an objective of this run")
    result = solve(problem, options, on_generation=_print_progress if args.progress else None)
    if args.weights and result["front"]:
        vector = [args.weights.get(name, 0.0) for name in problem.objectives]
        front = np.array(
            [[e["objectives"][n] for n in problem.objectives] for e in result["front"]]
        )
        result["weighted_choice"] = {
            "weights": args.weights,
            "index": weighted_choice(front, vector),
        }
    _write_json(result, args.out)
    _print_summary(result)


def _generate(args: argparse.Namespace) -> None:
    try:
        document = SHAPES[args.shape](args.tasks, args.devices, args.seed)
    except ValueError as error:
        raise UsageError(str(error)) from error
    _write_json(document, args.out)


def _import_wfformat(args: argparse.Namespace) -> None:
    workload = workload_from_wfformat(_read_json(args.workflow, "workflow"))
    document = with_fleet(workload, args.devices, args.seed)
    parse_problem(document)
    _write_json(document, args.out)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise UsageError(f"{what}: cannot read {path}: {error.strerror}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{what}: {path} is not JSON: {error}") from error


def _write_json(document: Any, out: Path | None) -> None:
    text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    # Written beside the target and renamed, so a reader never sees half a file.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, out)
    except OSError as error:
        raise UsageError(f"--out: cannot write {out}: {error.strerror}") from error


def _print_progress(progress: Progress) -> None:
    best = progress["best"] or {}
    values = ", ".join(f"{name} {value:.4g}" for name, value in best.items())
    print(
        f"generation {progress['generation']}: hypervolume {progress['hypervolume']:.4f}, "
        f"front {progress['front_size']}, best {values or '(none feasible yet)'}",
        file=sys.stderr,
    )


def _print_summary(result: dict[str, Any]) -> None:
    hv = result["hypervolume"]
    baselines = ", ".join(f"{name} {value:.3f}" for name, value in hv["baselines"].items())
    print(
        f"front: {len(result['front'])} solutions, hypervolume {hv['front']:.3f} "
        f"(baselines: {baselines}); dominates every baseline: "
        f"{result['front_dominates_baselines']}; {result['wall_time_s']:.2f} s",
        file=sys.stderr,
    )
