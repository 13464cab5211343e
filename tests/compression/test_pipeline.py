"""The pipeline end to end: every variant measured on the same data, the original untouched,
refused input leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from models_hub.compression import (
    REPORT_FORMAT,
    CompressionCancelled,
    CompressionError,
    CompressOptions,
    compress,
    load_data,
    parse_recipe,
)
from models_hub.compression.measure import DeviceProfile


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(
    files: dict[str, Path], out: Path, recipe: str, model: str = "model.pt", **options: object
) -> dict:
    return compress(
        files[model],
        parse_recipe(recipe),
        load_data(files["calib.npz"], "calib"),
        load_data(files["eval.npz"], "eval"),
        out,
        CompressOptions(**options),  # type: ignore[arg-type]
    )


def test_a_chain_is_measured_step_by_step(tmp_path: Path, files: dict[str, Path]) -> None:
    before = sha256(files["model.pt"])
    progress: list[tuple[float, str]] = []
    report = compress(
        files["model.pt"],
        parse_recipe("prune-distill:0.5+int8-static"),
        load_data(files["calib.npz"], "calib"),
        load_data(files["eval.npz"], "eval"),
        tmp_path,
        CompressOptions(
            parameters={"epochs": 2}, device_profiles=(DeviceProfile("cam", 5.0, 4.0),)
        ),
        on_progress=lambda fraction, message: progress.append((fraction, message)),
    )
    assert sha256(files["model.pt"]) == before
    assert report["format"] == REPORT_FORMAT
    assert json.loads((tmp_path / "report.json").read_text()) == report
    original, pruned, quantised = report["variants"]
    assert [v["name"] for v in report["variants"]] == [
        "original",
        "prune-distill:0.5",
        "prune-distill:0.5+int8-static",
    ]
    assert (pruned["parent"], quantised["parent"]) == ("original", "prune-distill:0.5")
    assert quantised["recipe"] == "prune-distill:0.5+int8-static"
    for variant in report["variants"]:
        assert (tmp_path / variant["file"]).is_file()
        assert variant["sha256"] == sha256(tmp_path / variant["file"])
        assert variant["latency_ms"]["1_thread"]["p50"] > 0
        assert set(variant["devices"]) == {"cam"}
    assert pruned["flops"] < 0.4 * original["flops"]
    assert quantised["size_bytes"] < pruned["size_bytes"] < original["size_bytes"]
    assert quantised["accuracy_delta"] == pytest.approx(
        100 * (quantised["accuracy"] - original["accuracy"])
    )
    assert original["pareto_optimal"], "the most accurate model is always on the front"
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_an_onnx_model_can_be_quantised_but_not_pruned(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    report = run(files, tmp_path / "q", "int8-static", model="model.onnx")
    assert report["model"]["framework"] == "onnx"
    with pytest.raises(CompressionError) as caught:
        run(files, tmp_path / "p", "prune:0.5", model="model.onnx")
    assert caught.value.field == "model" and "needs a torch model" in caught.value.message


def test_distillation_needs_no_labels(tmp_path: Path, files: dict[str, Path]) -> None:
    report = compress(
        files["model.pt"],
        parse_recipe("prune-distill:0.3"),
        load_data(files["unlabelled.npz"], "calib"),
        load_data(files["eval.npz"], "eval"),
        tmp_path,
        CompressOptions(parameters={"epochs": 1}),
    )
    assert report["variants"][1]["agreement"] > 0.5


def test_plain_fine_tuning_needs_labels(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(CompressionError) as caught:
        compress(
            files["model.pt"],
            parse_recipe("prune:0.5"),
            load_data(files["unlabelled.npz"], "calib"),
            load_data(files["eval.npz"], "eval"),
            tmp_path,
        )
    assert caught.value.field == "calib"
    assert not (tmp_path / "original.onnx").exists(), "refused before any work"


@pytest.mark.parametrize(
    ("recipe", "parameters", "field"),
    [
        ("int8-static", {"epochs": 3}, "parameters.epochs"),
        ("prune:0.5", {"epochs": 0}, "parameters.epochs"),
        ("prune:0.5", {"learning_rate": -1}, "parameters.learning_rate"),
        ("prune-distill:0.5", {"alpha": 2}, "parameters.alpha"),
        ("prune-distill:0.5", {"temperature": 0}, "parameters.temperature"),
        ("prune-distill:0.5+int8-static", {"calibration": "best"}, "parameters.calibration"),
    ],
)
def test_bad_parameters_are_refused_before_any_work(
    tmp_path: Path, files: dict[str, Path], recipe: str, parameters: dict, field: str
) -> None:
    with pytest.raises(CompressionError) as caught:
        run(files, tmp_path / "out", recipe, parameters=parameters)
    assert caught.value.field == field
    assert list(tmp_path.iterdir()) == [], "not even the output folder"


def test_mislabelled_data_is_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    import numpy as np

    evaluation = load_data(files["eval.npz"], "eval")
    assert evaluation.y is not None
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=evaluation.x, y=evaluation.y + 5)  # classes 5 to 14 of a 10-class model
    with pytest.raises(CompressionError) as caught:
        compress(
            files["model.onnx"],
            parse_recipe("int8-static"),
            load_data(files["calib.npz"], "calib"),
            load_data(bad, "eval"),
            tmp_path / "out",
        )
    assert caught.value.field == "eval" and "10 outputs" in caught.value.message


def test_data_that_does_not_fit_the_model_is_refused(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    import numpy as np

    wrong = tmp_path / "rgb.npz"
    np.savez(wrong, x=np.zeros((8, 3, 16, 16), np.float32))
    for model in ("model.onnx", "model.pt"):
        with pytest.raises(CompressionError) as caught:
            compress(
                files[model],
                parse_recipe("int8-static"),
                load_data(wrong, "calib"),
                load_data(wrong, "eval"),
                tmp_path / model,
            )
        assert caught.value.field == "calib", caught.value


def test_a_slower_variant_is_noted_or_refused(tmp_path: Path) -> None:
    from models_hub.compression.pipeline import _Run

    original = {
        "size_bytes": 100,
        "accuracy": 0.9,
        "latency_ms": {t: {"p50": 1.0} for t in THREADS},
    }
    slower: dict[str, Any] = {
        "size_bytes": 50,
        "accuracy": 0.9,
        "notes": [],
        "recipe": "int8-dynamic",
    }
    slower["latency_ms"] = {t: {"p50": 2.0} for t in THREADS}
    _Run(CompressOptions(), None, None)._compare(slower, original, tmp_path / "v.onnx")
    assert slower["speedup"]["1_thread"] == 0.5
    assert slower["notes"] == ["slower than the original: 0.50x its speed on 1 thread"]
    variant = tmp_path / "v.onnx"
    variant.write_bytes(b"model")
    slower["notes"] = []
    with pytest.raises(CompressionError) as caught:
        _Run(CompressOptions(refuse_slower=True), None, None)._compare(slower, original, variant)
    assert caught.value.field == "recipe"
    assert not variant.exists(), "the refused variant's file is removed"


THREADS = ("1_thread", "all_threads")


def test_a_stop_request_cancels(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(CompressionCancelled):
        compress(
            files["model.pt"],
            parse_recipe("prune:0.5"),
            load_data(files["calib.npz"], "calib"),
            load_data(files["eval.npz"], "eval"),
            tmp_path,
            CompressOptions(parameters={"epochs": 50}),
            should_stop=lambda: True,
        )
