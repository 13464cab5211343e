"""The compression pipeline: load a model, apply a recipe, measure every variant.

`compress` writes ``original.onnx``, one ONNX file per variant and ``report.json`` into
the output folder, and returns the report (format ``triad.compression-report/1``, see
docs/compression.md). The model file it was given is only read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from models_hub.compression import measure
from models_hub.compression.data import Data, check_labels
from models_hub.compression.errors import CompressionCancelled, CompressionError
from models_hub.compression.export import check_parity, export_onnx
from models_hub.compression.io import (
    check_input_shape,
    detect_framework,
    load_onnx,
    load_torch,
    onnx_signature,
)
from models_hub.compression.measure import DEFAULT_DEVICE_PROFILES, DeviceProfile
from models_hub.compression.prune import PruneOptions, prune
from models_hub.compression.quantize import (
    StaticOptions,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from models_hub.compression.recipes import Recipe, Step
from models_hub.compression.training import Distillation, TrainOptions, train

REPORT_FORMAT = "triad.compression-report/1"
DISTILLATION = Distillation(nn.Identity())  # its defaults
PARITY_SAMPLES = 64
MAX_EPOCHS = 200

Progress = Callable[[float, str], None]

_TRAINING = ("epochs", "learning_rate")
_PRUNING = ("importance", "ignored_layers", "global_pruning", *_TRAINING)
# The parameters each kind of step reads; a job's parameters are shared by its steps.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "int8-static": (
        "calibration",
        "per_channel",
        "activation_type",
        "weight_type",
        "format",
        "calibration_samples",
        "percentile",
    ),
    "int8-dynamic": ("weight_type", "per_channel"),
    "prune": _PRUNING,
    "prune-distill": (*_PRUNING, "temperature", "alpha"),
    "nas": ("population", "generations", "nas_epochs", "device_profile", "max_latency_ms"),
}


@dataclass(frozen=True)
class CompressOptions:
    parameters: Mapping[str, Any] = field(default_factory=dict)
    device_profiles: tuple[DeviceProfile, ...] = DEFAULT_DEVICE_PROFILES
    exporter: str = "torchscript"
    trust_pickle: bool = False
    refuse_slower: bool = False
    seed: int = 0


@dataclass
class Working:
    """A model on its way through the recipe: its ONNX file, and its torch module while
    it has one (quantised models have none)."""

    name: str
    parent: str | None
    recipe: str
    path: Path
    module: nn.Module | None
    notes: list[str] = field(default_factory=list)


def compress(
    model_path: str | Path,
    recipe: Recipe,
    calib: Data,
    evaluation: Data,
    out_dir: str | Path,
    options: CompressOptions | None = None,
    train_data: Data | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Apply `recipe` to the model and measure it and every variant on `evaluation`."""
    options = options or CompressOptions()
    train_data = train_data or calib
    if recipe.needs_labels and train_data.y is None:
        raise CompressionError(
            f"'{recipe.text}' fine-tunes on labels: the data has no 'y'", "calib"
        )
    check_parameters(recipe, options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(options, on_progress, should_stop)
    started = time.perf_counter()
    run.progress(0.0, f"loading {Path(model_path).name}")
    original, framework = load_model(model_path, calib, evaluation, out / "original.onnx", options)
    run.check_stop()
    reference = measure.run_onnx(original.path, evaluation.x)
    check_labels(evaluation, reference.shape[1], "eval")
    check_labels(train_data, reference.shape[1], "calib")
    results = [run.measure(original, evaluation, reference, None)]
    current = [original]
    for index, step in enumerate(recipe.steps):
        run.span = (
            0.1 + 0.7 * index / len(recipe.steps),
            0.1 + 0.7 * (index + 1) / len(recipe.steps),
        )
        current = [
            made
            for working in current
            for made in run.apply(step, working, original, calib, train_data, out)
        ]
        for made in current:
            results.append(run.measure(made, evaluation, reference, results[0]))
    _mark_pareto(results)
    report = {
        "format": REPORT_FORMAT,
        "recipe": recipe.text,
        "parameters": dict(options.parameters),
        "model": {"file": Path(model_path).name, "framework": framework},
        "signature": onnx_signature(onnx.load(str(original.path))).as_dict(),
        "host": {"gflops_1thread": measure.host_gflops(), "threads": measure.all_threads()},
        "device_profiles": [profile.as_dict() for profile in options.device_profiles],
        "evaluation": {"samples": len(evaluation), "labelled": evaluation.y is not None},
        "variants": results,
        "seconds": time.perf_counter() - started,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    run.progress(1.0, f"done: {len(results) - 1} variant(s) in {report['seconds']:.1f} s")
    return report


@dataclass(frozen=True)
class ModelInfo:
    """What the registry records of an uploaded model."""

    framework: str
    signature: dict[str, Any]
    params: int
    flops: int
    operators: tuple[str, ...]


def inspect_model(
    path: str | Path,
    sample_shape: tuple[int, ...] | None = None,
    trust_pickle: bool = False,
    field: str = "model",
) -> ModelInfo:
    """Validate a model file and describe it; a torch model needs `sample_shape` (the
    shape of one input sample) to be traced."""
    framework = detect_framework(path, field)
    if framework == "onnx":
        model = load_onnx(path, field)
        signature = onnx_signature(model)
        if sample_shape is not None:
            check_input_shape(signature, sample_shape, "input_shape")
        return ModelInfo(
            framework,
            signature.as_dict(),
            measure.count_parameters(model),
            measure.count_flops(model),
            signature.operators,
        )
    if sample_shape is None:
        raise CompressionError(
            "the shape of one input sample is needed for a torch model", "input_shape"
        )
    module = load_torch(path, field, trust_pickle)
    _check_torch_input(module, sample_shape, "input_shape")
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_onnx(module, sample_shape, Path(scratch) / "model.onnx")
        model = onnx.load(str(exported))
    signature = onnx_signature(model)
    return ModelInfo(
        framework,
        signature.as_dict(),
        measure.count_parameters(model),
        measure.count_flops(model),
        signature.operators,
    )


def check_parameters(recipe: Recipe, options: CompressOptions) -> None:
    """Refuse unknown or bad parameters before any work is done."""
    kinds = {step.kind for step in recipe.steps}
    allowed = {name for kind in kinds for name in PARAMETERS[kind]}
    unknown = sorted(set(options.parameters) - allowed)
    if unknown:
        raise CompressionError(
            f"'{recipe.text}' takes no parameter {', '.join(unknown)}; it takes: "
            f"{', '.join(sorted(allowed)) or 'none'}",
            f"parameters.{unknown[0]}",
        )
    if "int8-static" in kinds:
        StaticOptions.parse(options.parameters)
    if kinds & {"prune", "prune-distill"}:
        PruneOptions.parse(0.5, options.parameters)
        _train_options(options)
    if "prune-distill" in kinds:
        Distillation(
            nn.Identity(),
            temperature=_number(options.parameters, "temperature", DISTILLATION.temperature),
            alpha=_number(options.parameters, "alpha", DISTILLATION.alpha),
        )
    if "nas" in kinds:
        from models_hub.compression import nas

        nas.NasOptions.parse(options.parameters, options.device_profiles, options.seed)


def load_model(
    path: str | Path, calib: Data, evaluation: Data, onnx_path: Path, options: CompressOptions
) -> tuple[Working, str]:
    """The original as an ONNX file (exported and checked against torch if need be)."""
    framework = detect_framework(path)
    if evaluation.sample_shape != calib.sample_shape:
        raise CompressionError(
            f"samples of shape {list(evaluation.sample_shape)}, but the calibration data's "
            f"are {list(calib.sample_shape)}",
            "eval",
        )
    module = None
    if framework == "onnx":
        check_input_shape(onnx_signature(load_onnx(path)), calib.sample_shape, "calib")
        shutil.copyfile(path, onnx_path)
    else:
        module = load_torch(path, trust_pickle=options.trust_pickle)
        _check_torch_input(module, calib.sample_shape, "calib")
        export_onnx(module, calib.sample_shape, onnx_path, options.exporter)
        check_parity(module, onnx_path, evaluation.sample(PARITY_SAMPLES).x)
    return Working("original", None, "", onnx_path, module), framework


def _check_torch_input(module: nn.Module, sample_shape: tuple[int, ...], field: str) -> None:
    try:
        with torch.inference_mode():
            output = module(torch.zeros((2, *sample_shape)))
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CompressionError(
            f"the model does not accept samples of shape {list(sample_shape)}: {message}", field
        ) from error
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        raise CompressionError("the model must return one [batch, classes] tensor", "model")


class _Run:
    """The state of one `compress` call: options, progress reporting, and the steps."""

    def __init__(
        self,
        options: CompressOptions,
        on_progress: Progress | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.options = options
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.span = (0.0, 0.1)

    def progress(self, fraction: float, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(fraction, message)

    def within_step(self, fraction: float, message: str) -> None:
        low, high = self.span
        self.progress(low + (high - low) * min(max(fraction, 0.0), 1.0), message)

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise CompressionCancelled

    def apply(
        self,
        step: Step,
        working: Working,
        original: Working,
        calib: Data,
        train_data: Data,
        out: Path,
    ) -> list[Working]:
        self.check_stop()
        name = f"{working.name}+{step.name}" if working.parent else step.name
        self.within_step(0.0, f"{name}: starting")
        if step.kind == "nas":
            return self._search(working, calib, train_data, out)
        target = out / f"{_file_stem(name)}.onnx"
        recipe = f"{working.recipe}+{step.name}" if working.recipe else step.name
        if step.kind == "int8-static":
            notes = quantize_int8_static(
                working.path, target, calib, StaticOptions.parse(self.options.parameters)
            )
            return [Working(name, working.name, recipe, target, None, notes)]
        if step.kind == "int8-dynamic":
            notes = quantize_int8_dynamic(working.path, target, self.options.parameters)
            return [Working(name, working.name, recipe, target, None, notes)]
        module = self._pruned(step, working, original, train_data)
        export_onnx(module, train_data.sample_shape, target, self.options.exporter)
        check_parity(module, target, train_data.sample(PARITY_SAMPLES).x)
        return [Working(name, working.name, recipe, target, module)]

    def _pruned(
        self, step: Step, working: Working, original: Working, train_data: Data
    ) -> nn.Module:
        if working.module is None:
            raise CompressionError(
                f"'{step.name}' needs a torch model; this one is ONNX (upload the torch model)",
                "model",
            )
        assert step.ratio is not None
        options = PruneOptions.parse(step.ratio, self.options.parameters)
        pruned = prune(working.module, train_data.sample_shape, train_data, options)
        distillation = None
        if step.kind == "prune-distill":
            assert original.module is not None
            distillation = Distillation(
                original.module,
                temperature=_number(
                    self.options.parameters, "temperature", DISTILLATION.temperature
                ),
                alpha=_number(self.options.parameters, "alpha", DISTILLATION.alpha),
            )
        train_options = _train_options(self.options)
        return train(
            pruned,
            train_data,
            train_options,
            distillation,
            on_epoch=lambda epoch, loss: self.within_step(
                epoch / train_options.epochs, f"{step.name}: epoch {epoch}, loss {loss:.4f}"
            ),
            should_stop=self.should_stop,
        )

    def _search(self, working: Working, calib: Data, train_data: Data, out: Path) -> list[Working]:
        from models_hub.compression import nas

        if train_data.y is None:
            raise CompressionError("the search trains candidates on labels: no 'y'", "calib")
        options = nas.NasOptions.parse(
            self.options.parameters, self.options.device_profiles, self.options.seed
        )
        result = nas.search(
            train_data,
            train_data.sample_shape,
            int(train_data.y.max()) + 1,
            options,
            on_progress=self.within_step,
            should_stop=self.should_stop,
        )
        made = []
        for rank, candidate in enumerate(result.front, start=1):
            name = f"nas-{rank}"
            target = out / f"{name}.onnx"
            export_onnx(candidate.model, train_data.sample_shape, target, self.options.exporter)
            notes = [f"architecture: {nas.describe(candidate.stages)}"]
            made.append(Working(name, working.name, "nas", target, candidate.model, notes))
        return made

    def measure(
        self,
        working: Working,
        evaluation: Data,
        reference: np.ndarray,
        original: dict[str, Any] | None,
    ) -> dict[str, Any]:
        self.check_stop()
        self.within_step(1.0, f"{working.name}: measuring")
        outputs = reference if original is None else measure.run_onnx(working.path, evaluation.x)
        model = onnx.load(str(working.path))
        sample = evaluation.x[0]
        latency = {
            "1_thread": measure.latency_ms(working.path, sample, threads=1),
            "all_threads": measure.latency_ms(working.path, sample, threads=0),
        }
        result: dict[str, Any] = {
            "name": working.name,
            "parent": working.parent,
            "recipe": working.recipe or "original",
            "file": working.path.name,
            "sha256": _sha256(working.path),
            "size_bytes": working.path.stat().st_size,
            "params": measure.count_parameters(model),
            "flops": measure.count_flops(model),
            "accuracy": None if evaluation.y is None else measure.accuracy(outputs, evaluation.y),
            "agreement": measure.agreement(outputs, reference),
            "latency_ms": latency,
            "devices": measure.device_estimates(
                latency["1_thread"]["p50"], self.options.device_profiles
            ),
            "notes": list(working.notes),
        }
        if original is not None:
            self._compare(result, original, working.path)
        return result

    def _compare(self, result: dict[str, Any], original: dict[str, Any], path: Path) -> None:
        if result["accuracy"] is not None:
            result["accuracy_delta"] = 100.0 * (result["accuracy"] - original["accuracy"])
        result["size_ratio"] = original["size_bytes"] / result["size_bytes"]
        result["speedup"] = {
            threads: original["latency_ms"][threads]["p50"] / result["latency_ms"][threads]["p50"]
            for threads in ("1_thread", "all_threads")
        }
        slower = result["speedup"]["1_thread"]
        if slower < 1.0:
            message = f"slower than the original: {slower:.2f}x its speed on 1 thread"
            if self.options.refuse_slower:
                path.unlink(missing_ok=True)
                raise CompressionError(f"'{result['recipe']}' made the model {message}", "recipe")
            result["notes"].append(message)


def _mark_pareto(results: list[dict[str, Any]]) -> None:
    """Pareto-optimal on (accuracy, or agreement without labels; 1-thread latency p50)."""
    key = "accuracy" if results[0]["accuracy"] is not None else "agreement"
    points = [(-r[key], r["latency_ms"]["1_thread"]["p50"]) for r in results]
    for result, point in zip(results, points, strict=True):
        result["pareto_optimal"] = not any(
            other[0] <= point[0] and other[1] <= point[1] and other != point for other in points
        )


def _train_options(options: CompressOptions) -> TrainOptions:
    epochs = options.parameters.get("epochs", 10)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise CompressionError(
            f"must be a whole number from 1 to {MAX_EPOCHS}", "parameters.epochs"
        )
    learning_rate = _number(options.parameters, "learning_rate", 2e-3)
    if not 0 < learning_rate <= 1:
        raise CompressionError("must be above 0 and at most 1", "parameters.learning_rate")
    return TrainOptions(epochs=epochs, learning_rate=learning_rate, seed=options.seed)


def _number(parameters: Mapping[str, Any], name: str, default: float) -> float:
    value = parameters.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise CompressionError(f"must be a number, not {value!r}", f"parameters.{name}")
    return float(value)


def _file_stem(name: str) -> str:
    return name.replace("+", "_").replace(":", "-")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
