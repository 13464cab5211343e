"""`python -m scheduling`, run as a user would, in a subprocess."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.helpers import edge, problem_document, task

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, options: str = "") -> subprocess.CompletedProcess[str]:
    """Run the CLI with `args`, then the space-separated `options`."""
    return subprocess.run(
        [sys.executable, "-m", "scheduling", *args, *shlex.split(options)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generate_then_solve_writes_the_documented_result(tmp_path: Path) -> None:
    problem = tmp_path / "problem.json"
    generated = run_cli(
        *("generate", "--out", str(problem)),
        options="--shape video-pipeline --tasks 18 --devices 9 --seed 2",
    )
    assert generated.returncode == 0, generated.stderr
    assert len(json.loads(problem.read_text())["tasks"]) == 18

    out = tmp_path / "result.json"
    solved = run_cli(
        *("solve", str(problem), "--out", str(out)),
        options="--objectives makespan,energy,cost --algorithm nsga2 --generations 5 "
        "--population 16 --seed 7 --progress --weights makespan=1",
    )
    assert solved.returncode == 0, solved.stderr
    assert "generation 5: hypervolume" in solved.stderr
    result = json.loads(out.read_text())
    assert result["objectives"] == ["makespan", "energy", "cost"]
    entry = result["front"][0]
    assert set(entry) >= {"objectives", "assignment", "timeline"}
    assert set(entry["objectives"]) == {"makespan", "energy", "cost"}
    assert set(result["baselines"]["heft"]) >= {"objectives", "assignment", "timeline"}
    assert {"front", "baselines"} <= result["hypervolume"].keys()
    assert result["lower_bounds"]["makespan"] > 0
    assert result["wall_time_s"] > 0
    chosen = result["weighted_choice"]["index"]
    fastest = min(e["objectives"]["makespan"] for e in result["front"])
    assert result["front"][chosen]["objectives"]["makespan"] == fastest


def test_a_refused_problem_names_the_task_and_writes_nothing(tmp_path: Path) -> None:
    problem = tmp_path / "cyclic.json"
    problem.write_text(
        json.dumps(problem_document([task("a"), task("b")], [edge("a", "b"), edge("b", "a")]))
    )
    out = tmp_path / "result.json"
    solved = run_cli("solve", str(problem), "--out", str(out))
    assert solved.returncode == 2
    assert "edges: the graph has a cycle: a -> b -> a" in solved.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "missing.json"], "problem: cannot read missing.json"),
        (["solve", "pyproject.toml"], "problem: pyproject.toml is not JSON"),
        (["solve", "x.json", "--objectives", "speed"], "unknown objective(s) speed"),
        (["solve", "x.json", "--generations", "0"], "--generations: must be at least 1"),
        (["solve", "x.json", "--weights", "speed=1"], "unknown objective 'speed'"),
        (["solve", "x.json", "--weights", "cost=cheap"], "cost: weight 'cheap' is not a number"),
        (["solve", "x.json", "--weights", "cost=inf"], "cost: weight must be a finite number"),
        (["solve", "x.json", "--seed", "-1"], "--seed: must be >= 0, not -1"),
        (
            [
                "generate",
                "--shape",
                "layered",
                "--tasks",
                "5",
                "--devices",
                "3",
                "--out",
                "/proc/triad/p.json",
            ],
            "--out: cannot write /proc/triad/p.json",
        ),
        (["generate", "--shape", "mesh", "--tasks", "5", "--devices", "3"], "--shape: invalid"),
        (["import-wfformat", "pyproject.toml", "--devices", "3"], "workflow: pyproject.toml"),
    ],
)
def test_bad_arguments_are_refused_by_name(args: list[str], message: str) -> None:
    refused = run_cli(*args)
    assert refused.returncode == 2
    assert message in refused.stderr


def test_import_wfformat_writes_a_problem_that_solves(tmp_path: Path) -> None:
    problem = tmp_path / "montage.json"
    workflow = ROOT / "tests" / "engine" / "data" / "montage-1.5.json"
    imported = run_cli("import-wfformat", str(workflow), "--devices", "6", "--out", str(problem))
    assert imported.returncode == 0, imported.stderr
    document = json.loads(problem.read_text())
    assert len(document["devices"]) == 6 and document["tasks"]
    solved = run_cli("solve", str(problem), "--generations", "2", "--population", "8")
    assert solved.returncode == 0, solved.stderr
    assert json.loads(solved.stdout)["front"]
