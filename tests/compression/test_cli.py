"""``python -m models_hub``: exit codes, the report, and nothing written on refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models_hub.compression.cli import main
from tests.conftest import ROOT


def args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "compress",
        str(files["model.onnx"]),
        "--calib",
        str(files["calib.npz"]),
        "--eval",
        str(files["eval.npz"]),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_compress_writes_variants_and_a_report(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(args(files, out, "--recipe", "int8-static", "--param", "calibration=entropy")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["parameters"] == {"calibration": "entropy"}
    assert sorted(p.name for p in out.iterdir()) == [
        "int8-static.onnx",
        "original.onnx",
        "report.json",
    ]
    printed = capsys.readouterr().out
    assert "int8-static" in printed and "speedup 1T" in printed


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--recipe", "prune:2"], "recipe: the pruning ratio"),
        (["--recipe", "int8-static", "--param", "calibration=median"], "parameters.calibration"),
        (["--recipe", "int8-static", "--param", "oops"], "--param: 'oops' is not NAME=VALUE"),
        (["--recipe", "int8-static", "--devices", "/nonexistent.json"], "--devices"),
    ],
)
def test_refused_input_exits_2_and_writes_nothing(
    tmp_path: Path,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    assert main(args(files, tmp_path / "out", *extra)) == 2
    assert expected in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [], "no output folder, no scratch folder"


def test_a_non_empty_output_folder_is_refused(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(args(files, tmp_path, "--recipe", "int8-static")) == 2
    assert "--out" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_task_and_inspect_run_as_a_module(tmp_path: Path) -> None:
    task = subprocess.run(
        [
            sys.executable,
            "-m",
            "models_hub",
            "task",
            "digits",
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(task.stdout)
    assert info["train_samples"] == 1257 and info["test_samples"] == 540
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "models_hub",
            "inspect",
            str(tmp_path / "model.pt"),
            "--input-shape",
            "1,16,16",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["outputs"][0]["shape"] == [None, 10]
    refused = subprocess.run(
        [sys.executable, "-m", "models_hub", "inspect", str(tmp_path / "task.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "model: not an ONNX model" in refused.stderr
