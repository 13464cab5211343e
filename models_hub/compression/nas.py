"""Hardware-aware architecture search: the accuracy-latency front of a small MobileNet-style
family, for one target device profile.

- **Family.** A stem and four stages of MobileNetV2 inverted-residual blocks; each stage
  chooses its width, depth (1 to 3 blocks), depthwise kernel (3, 5 or 7) and expansion (3
  or 6). Sized for the built-in tasks' small inputs (16x16 and 32x32): the stem keeps
  stride 1 below 64 pixels, and the stages halve the resolution three times.
- **Genome.** Four integers per stage, each an index into that stage's choices, so that
  pymoo's integer operators (SBX and polynomial mutation, rounded) move along ordered
  choices: a neighbouring gene is a neighbouring width or kernel.
- **Latency.** Predicted, not measured per candidate: a lookup table holds the latency of
  each distinct part (stem, block configuration at its input resolution, head), each
  exported alone with `export_onnx` and timed with onnxruntime on one thread at batch 1,
  the first time a candidate needs it. onnxruntime's own per-run cost, measured on an
  empty graph, is taken off every part and counted once per network, or a deep network
  would be charged it once per block. A network's prediction is the sum of its parts,
  scaled to the target device by this host's GFLOPS over the device's (the assumption of
  `measure.device_estimates`).
- **Accuracy.** Each candidate is trained from scratch for a few epochs (seeded, no weight
  sharing: a few epochs are what the built-in tasks need, and every front member is then a
  model trained on its own) on part of the training data, and scored on the rest; the
  caller's evaluation data stays unseen for the final measurement.
- **Search.** NSGA-II over the genome, minimising (-accuracy, predicted latency), with an
  optional latency budget on the device as a constraint. Every genome is trained at most
  once; the front is taken over everything evaluated, not just the last population.

A run reproduces exactly (same genomes, same accuracies) given the same seed and the same
latency table. A freshly measured table carries timing noise, which can reorder candidates
whose latencies nearly tie; save a table with `LatencyTable.save` and load it to reproduce.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from onnx import helper
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from torch import nn

from models_hub.compression import measure, training
from models_hub.compression.architectures import (
    InvertedResidual,
    MobileNetStyle,
    StageSpec,
    conv_bn_relu,
)
from models_hub.compression.data import Data, check_labels
from models_hub.compression.errors import CompressionCancelled, CompressionError
from models_hub.compression.export import export_onnx
from models_hub.compression.training import TrainOptions, predict

Genome = tuple[int, ...]
Progress = Callable[[float, str], None]
StopCheck = Callable[[], bool]

# The edge tier: the one a searched model is most often made for.
DEFAULT_PROFILE = measure.DEFAULT_DEVICE_PROFILES[1]
MAX_POPULATION = 64
MAX_GENERATIONS = 30
MAX_EPOCHS = 30
_LIMITS = {
    "population": (4, MAX_POPULATION),
    "generations": (1, MAX_GENERATIONS),
    "epochs": (1, MAX_EPOCHS),
}
# Fewer samples than this cannot be split into a training and a validation part that mean
# anything.
MIN_SAMPLES = 20
# Inputs at least this large get a stride-2 stem, as in MobileNetV2; smaller ones keep detail.
STRIDE_2_STEM_FROM = 64
# Timed runs per lookup-table entry, in rounds: the parts take microseconds, so this costs
# a few milliseconds per part; exporting the part costs more.
LUT_RUNS = 200
LUT_ROUNDS = 8
LUT_WARMUP = 20


# --- search space -------------------------------------------------------------------------


@dataclass(frozen=True)
class StageChoices:
    """What one stage may be: the first block has `stride`, the rest stride 1."""

    widths: tuple[int, ...]
    stride: int
    depths: tuple[int, ...] = (1, 2, 3)
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (3, 6)

    def options(self) -> tuple[tuple[int, ...], ...]:
        """The choices in genome order: width, depth, kernel, expansion."""
        return (self.widths, self.depths, self.kernels, self.expansions)


GENES_PER_STAGE = 4

# Sized for the built-in tasks: a 16x16 input is seen at 8x8, 4x4 and 2x2 by the stages.
# A first stage at full resolution (stride 1) cost about four times as much to train, and
# the digits hold only 8x8 pixels of information anyway.
DEFAULT_STAGES = (
    StageChoices(widths=(8, 12, 16), stride=2),
    StageChoices(widths=(16, 24, 32), stride=2),
    StageChoices(widths=(24, 32, 48), stride=2),
    StageChoices(widths=(32, 48, 64), stride=1),
)


@dataclass(frozen=True)
class SearchSpace:
    stages: tuple[StageChoices, ...] = DEFAULT_STAGES
    stem_channels: int = 16
    head_channels: int = 128

    @property
    def n_genes(self) -> int:
        return GENES_PER_STAGE * len(self.stages)

    @property
    def upper(self) -> npt.NDArray[np.int64]:
        """The largest index of each gene (the smallest is 0)."""
        return np.array(
            [len(choice) - 1 for stage in self.stages for choice in stage.options()],
            dtype=np.int64,
        )

    @property
    def size(self) -> int:
        return math.prod(int(u) + 1 for u in self.upper)

    def decode(self, genome: Sequence[int]) -> tuple[StageSpec, ...]:
        if len(genome) != self.n_genes:
            raise CompressionError(
                f"a genome of this space has {self.n_genes} genes, not {len(genome)}", "genome"
            )
        specs = []
        for index, stage in enumerate(self.stages):
            genes = genome[GENES_PER_STAGE * index : GENES_PER_STAGE * (index + 1)]
            options = stage.options()
            if any(not 0 <= int(g) < len(o) for g, o in zip(genes, options, strict=True)):
                raise CompressionError(f"gene out of range in stage {index}: {genes}", "genome")
            width, depth, kernel, expansion = (
                o[int(g)] for g, o in zip(genes, options, strict=True)
            )
            specs.append(StageSpec(width, depth, stage.stride, kernel, expansion))
        return tuple(specs)


DEFAULT_SPACE = SearchSpace()


def decode(genome: Sequence[int], space: SearchSpace = DEFAULT_SPACE) -> tuple[StageSpec, ...]:
    """The stages a genome stands for."""
    return space.decode(genome)


def describe(stages: Sequence[StageSpec]) -> str:
    """One line a person can read: per stage, channels x blocks, kernel, expansion, stride."""
    return "; ".join(
        f"{s.channels}x{s.depth} k{s.kernel} e{s.expansion} s{s.stride}" for s in stages
    )


def stem_stride(sample_shape: Sequence[int]) -> int:
    return 2 if min(sample_shape[1:]) >= STRIDE_2_STEM_FROM else 1


def build(
    stages: Sequence[StageSpec],
    sample_shape: Sequence[int],
    num_classes: int,
    space: SearchSpace = DEFAULT_SPACE,
) -> MobileNetStyle:
    """An untrained member of the family, for inputs of `sample_shape` (C, H, W)."""
    return MobileNetStyle(
        stages,
        in_channels=int(sample_shape[0]),
        num_classes=num_classes,
        stem_channels=space.stem_channels,
        head_channels=space.head_channels,
        stem_stride=stem_stride(sample_shape),
    )


# --- latency lookup table -----------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One separately timed piece of a network, at the input resolution it sees."""

    kind: str  # "stem", "block" or "head"
    c_in: int
    c_out: int
    height: int
    width: int
    stride: int = 1
    kernel: int = 3
    expansion: int = 1
    classes: int = 0

    @property
    def key(self) -> str:
        return (
            f"{self.kind}:{self.c_in}>{self.c_out}:s{self.stride}:k{self.kernel}"
            f":e{self.expansion}:c{self.classes}:{self.height}x{self.width}"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.c_in, self.height, self.width)

    def module(self) -> nn.Module:
        if self.kind == "stem":
            return conv_bn_relu(self.c_in, self.c_out, stride=self.stride)
        if self.kind == "block":
            return InvertedResidual(self.c_in, self.c_out, self.stride, self.expansion, self.kernel)
        return nn.Sequential(
            conv_bn_relu(self.c_in, self.c_out, kernel=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(self.c_out, self.classes),
        )


def _shrink(size: int, stride: int) -> int:
    # Odd kernels with padding k // 2: the output size does not depend on the kernel.
    return (size - 1) // stride + 1


def network_parts(
    stages: Sequence[StageSpec],
    sample_shape: Sequence[int],
    num_classes: int,
    space: SearchSpace = DEFAULT_SPACE,
) -> list[Part]:
    """The parts `build` would assemble, in order, each with its input resolution."""
    channels, height, width = (int(d) for d in sample_shape)
    stride = stem_stride(sample_shape)
    parts = [Part("stem", channels, space.stem_channels, height, width, stride)]
    height, width, c_in = _shrink(height, stride), _shrink(width, stride), space.stem_channels
    for stage in stages:
        for index in range(stage.depth):
            s = stage.stride if index == 0 else 1
            parts.append(
                Part("block", c_in, stage.channels, height, width, s, stage.kernel, stage.expansion)
            )
            height, width, c_in = _shrink(height, s), _shrink(width, s), stage.channels
    parts.append(Part("head", c_in, space.head_channels, height, width, classes=num_classes))
    return parts


class LatencyTable:
    """Host latency (ms, 1 thread, batch 1, onnxruntime's per-run cost taken off) of every
    part measured so far. Parts are measured the first time a prediction needs them."""

    def __init__(
        self,
        entries: dict[str, float] | None = None,
        overhead_ms: float | None = None,
        host_gflops: float | None = None,
        runs: int = LUT_RUNS,
    ) -> None:
        self.entries: dict[str, float] = dict(entries or {})
        self.overhead_ms = overhead_ms
        self._host_gflops = host_gflops
        self.runs = runs
        self.measuring_s = 0.0

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def host_gflops(self) -> float:
        """The GFLOPS of the host the entries were measured on (this one unless loaded)."""
        if self._host_gflops is None:
            self._host_gflops = measure.host_gflops()
        return self._host_gflops

    def host_ms(
        self,
        stages: Sequence[StageSpec],
        sample_shape: Sequence[int],
        num_classes: int,
        space: SearchSpace = DEFAULT_SPACE,
    ) -> float:
        """Predicted latency of the network on this host: its parts plus one run's cost."""
        parts = network_parts(stages, sample_shape, num_classes, space)
        missing = {part.key: part for part in parts if part.key not in self.entries}
        if missing or self.overhead_ms is None:
            self._measure(list(missing.values()), sample_shape)
        assert self.overhead_ms is not None
        return self.overhead_ms + sum(self.entries[part.key] for part in parts)

    def predict_ms(
        self,
        stages: Sequence[StageSpec],
        sample_shape: Sequence[int],
        num_classes: int,
        profile: measure.DeviceProfile,
        space: SearchSpace = DEFAULT_SPACE,
    ) -> float:
        """Predicted latency on `profile`, assuming it runs the network as efficiently as
        this host does per FLOP."""
        host = self.host_ms(stages, sample_shape, num_classes, space)
        return host * self.host_gflops / profile.gflops

    def _measure(self, parts: list[Part], sample_shape: Sequence[int]) -> None:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="triad-nas-") as scratch:
            timers = [
                _Timer(_exported(p, Path(scratch) / f"{i}.onnx")) for i, p in enumerate(parts)
            ]
        empty = _Timer(_empty_model(sample_shape)) if self.overhead_ms is None else None
        everything = [*timers, *([empty] if empty is not None else [])]
        # Round-robin: a burst of other work on the machine then spoils one round of a
        # part, not all of its runs.
        for _ in range(LUT_ROUNDS):
            for timer in everything:
                timer.run(max(1, self.runs // LUT_ROUNDS))
        if empty is not None:
            self.overhead_ms = empty.best_ms
        assert self.overhead_ms is not None
        for part, timer in zip(parts, timers, strict=True):
            # Never zero: every part costs something, and a zero would tie candidates.
            self.entries[part.key] = max(timer.best_ms - self.overhead_ms, 1e-4)
        self.measuring_s += time.perf_counter() - started

    def as_dict(self) -> dict[str, Any]:
        return {
            "host_gflops": self.host_gflops,
            "overhead_ms": self.overhead_ms,
            "runs": self.runs,
            "entries": dict(sorted(self.entries.items())),
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """A table saved by `save`; its entries keep the GFLOPS of the host that measured
        them, so predictions for a device scale from that host, not this one."""
        try:
            raw = json.loads(Path(path).read_text())
            entries = {str(k): float(v) for k, v in raw["entries"].items()}
            overhead = None if raw["overhead_ms"] is None else float(raw["overhead_ms"])
            gflops = float(raw["host_gflops"])
            if not gflops > 0:
                raise ValueError(f"host_gflops must be above 0, not {gflops}")
            return cls(entries, overhead, gflops, int(raw["runs"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CompressionError(f"not a readable latency table ({error})", "lut") from error


def _exported(part: Part, path: Path) -> onnx.ModelProto:
    """The part alone, as the exporter writes it (BatchNorm folded into the convolution),
    with random weights: latency does not depend on their values."""
    return onnx.load(str(export_onnx(part.module(), part.input_shape, path)))


def _empty_model(sample_shape: Sequence[int]) -> onnx.ModelProto:
    """A graph that does nothing: what onnxruntime costs per run before any work."""
    shape = [1, *(int(d) for d in sample_shape)]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "empty",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class _Timer:
    """The fastest single-sample run of a model on one thread, over however many runs.

    The fastest, not the median: the parts take microseconds, and on a shared machine the
    median of the same part moved by up to 2x between tables as other processes came and
    went, reordering candidates. The minimum is what the part costs when it has the core.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        first = self.session.get_inputs()[0]
        self.feed = {first.name: np.zeros([1, *first.shape[1:]], dtype=np.float32)}
        for _ in range(LUT_WARMUP):
            self.session.run(None, self.feed)
        self.best_ms = math.inf

    def run(self, runs: int) -> None:
        for _ in range(runs):
            started = time.perf_counter()
            self.session.run(None, self.feed)
            self.best_ms = min(self.best_ms, (time.perf_counter() - started) * 1000.0)


# --- options and results ------------------------------------------------------------------


@dataclass(frozen=True)
class NasOptions:
    population: int = 8
    generations: int = 3
    epochs: int = 3
    seed: int = 0
    profile: measure.DeviceProfile = DEFAULT_PROFILE
    # Part of the training data held out to score candidates.
    validation_fraction: float = 0.2
    # A latency budget on `profile`; candidates over it are infeasible.
    max_latency_ms: float | None = None
    learning_rate: float = 1e-2
    batch_size: int = 64
    # torch threads while training candidates; see `_torch_threads`.
    threads: int = 1
    space: SearchSpace = DEFAULT_SPACE

    def __post_init__(self) -> None:
        for name in ("population", "generations", "epochs"):
            _check_int(name, getattr(self, name), *_LIMITS[name])
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_int("batch_size", self.batch_size, 1, 4096)
        _check_int("threads", self.threads, 1, 256)
        if not 0.05 <= self.validation_fraction <= 0.5:
            raise CompressionError(
                f"must be between 0.05 and 0.5, not {self.validation_fraction}",
                "parameters.validation_fraction",
            )
        if not 0.0 < self.learning_rate <= 1.0:
            raise CompressionError(
                f"must be above 0 and at most 1, not {self.learning_rate}",
                "parameters.learning_rate",
            )
        if not self.profile.gflops > 0:
            raise CompressionError(
                f"the device's GFLOPS must be above 0, not {self.profile.gflops}",
                "parameters.profile",
            )
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise CompressionError(
                f"must be above 0, not {self.max_latency_ms}", "parameters.max_latency_ms"
            )

    @classmethod
    def parse(
        cls,
        parameters: Mapping[str, Any],
        device_profiles: Sequence[measure.DeviceProfile] = measure.DEFAULT_DEVICE_PROFILES,
        seed: int = 0,
    ) -> NasOptions:
        """Options from a job's parameters (JSON values): `population`, `generations`,
        `nas_epochs`, `device_profile` (a name, or the unique start of one, among
        `device_profiles`) and `max_latency_ms`; anything absent keeps its default."""
        defaults = cls()
        values: dict[str, Any] = {"seed": seed}
        for key, name in (("population", "population"), ("generations", "generations")):
            values[name] = parameters.get(key, getattr(defaults, name))
            _check_int(key, values[name], *_LIMITS[name])
        values["epochs"] = parameters.get("nas_epochs", defaults.epochs)
        _check_int("nas_epochs", values["epochs"], *_LIMITS["epochs"])
        budget = parameters.get("max_latency_ms")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)):
            raise CompressionError(f"must be a number, not {budget!r}", "parameters.max_latency_ms")
        values["max_latency_ms"] = None if budget is None else float(budget)
        values["profile"] = _pick_profile(parameters.get("device_profile"), device_profiles)
        return cls(**values)


def _pick_profile(name: object, profiles: Sequence[measure.DeviceProfile]) -> measure.DeviceProfile:
    """The profile called `name`; without a name, the default profile if it is offered,
    else the first one offered."""
    if not profiles:
        raise CompressionError("no device profile to search for", "parameters.device_profile")
    if name is None:
        return DEFAULT_PROFILE if DEFAULT_PROFILE in profiles else profiles[0]
    names = ", ".join(repr(p.name) for p in profiles)
    if not isinstance(name, str):
        raise CompressionError(f"must be one of {names}, not {name!r}", "parameters.device_profile")
    exact = [p for p in profiles if p.name == name]
    starts = [p for p in profiles if p.name.lower().startswith(name.strip().lower())]
    if exact or len(starts) == 1:
        return (exact or starts)[0]
    raise CompressionError(
        f"'{name}' names {'several' if starts else 'none'} of {names}", "parameters.device_profile"
    )


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CompressionError(
            f"must be an integer from {low} to {high}, not {value!r}", f"parameters.{name}"
        )


@dataclass(frozen=True)
class Candidate:
    """A trained member of the family with its validation accuracy and predicted latency."""

    genome: Genome
    stages: tuple[StageSpec, ...]
    accuracy: float
    predicted_latency_ms: float  # on the target profile
    host_latency_ms: float  # the table's prediction for this host, 1 thread
    params: int
    feasible: bool
    model: nn.Module = field(compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "genome": list(self.genome),
            "stages": [dataclasses.asdict(stage) for stage in self.stages],
            "accuracy": self.accuracy,
            "predicted_latency_ms": self.predicted_latency_ms,
            "host_latency_ms": self.host_latency_ms,
            "params": self.params,
            "feasible": self.feasible,
        }


@dataclass(frozen=True)
class GenerationRecord:
    generation: int
    evaluated: int  # distinct genomes trained so far
    front_size: int
    best_accuracy: float
    fastest_ms: float  # on the target profile, among the front
    seconds: float  # since the search began

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NasResult:
    front: tuple[Candidate, ...]  # Pareto-optimal and feasible, fastest first
    candidates: tuple[Candidate, ...]  # every genome trained, in evaluation order
    history: tuple[GenerationRecord, ...]
    lut_entries: int  # parts in the table, including any measured before this search
    lut_seconds: float  # spent measuring parts during this search
    host_gflops: float
    profile: measure.DeviceProfile
    seconds: float

    @property
    def evaluated(self) -> int:
        return len(self.candidates)

    @property
    def best(self) -> Candidate:
        """The most accurate member of the front."""
        return max(self.front, key=lambda c: (c.accuracy, -c.predicted_latency_ms))

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.as_dict(),
            "host_gflops": self.host_gflops,
            "evaluated": self.evaluated,
            "lut_entries": self.lut_entries,
            "lut_seconds": self.lut_seconds,
            "seconds": self.seconds,
            "front": [c.as_dict() for c in self.front],
            "candidates": [c.as_dict() for c in self.candidates],
            "history": [h.as_dict() for h in self.history],
        }


# --- evaluation ---------------------------------------------------------------------------


def split_holdout(data: Data, fraction: float, seed: int) -> tuple[Data, Data]:
    """A seeded split of labelled data into a training and a validation part."""
    assert data.y is not None
    order = np.random.default_rng(seed).permutation(len(data))
    held = min(max(1, round(len(data) * fraction)), len(data) - 1)
    fit, val = order[held:], order[:held]
    return Data(data.x[fit], data.y[fit]), Data(data.x[val], data.y[val])


class _Evaluator:
    """Trains each genome once and remembers it, so that pymoo's repeats cost nothing."""

    def __init__(
        self,
        fit: Data,
        val: Data,
        sample_shape: tuple[int, ...],
        num_classes: int,
        options: NasOptions,
        table: LatencyTable,
        should_stop: StopCheck | None,
    ) -> None:
        self.fit, self.val = fit, val
        self.sample_shape, self.num_classes = sample_shape, num_classes
        self.options, self.table = options, table
        self.should_stop = should_stop
        self.cache: dict[Genome, Candidate] = {}

    def __call__(self, genome: Genome) -> tuple[Candidate, bool]:
        """The candidate, and whether it came from the cache."""
        if genome in self.cache:
            return self.cache[genome], True
        if self.should_stop is not None and self.should_stop():
            raise CompressionCancelled
        self.cache[genome] = self._evaluate(genome)
        return self.cache[genome], False

    def _evaluate(self, genome: Genome) -> Candidate:
        space, options = self.options.space, self.options
        stages = space.decode(genome)
        host_ms = self.table.host_ms(stages, self.sample_shape, self.num_classes, space)
        latency = host_ms * self.table.host_gflops / options.profile.gflops
        model = self._train(stages)
        scores = predict(model, self.val.x)
        assert self.val.y is not None
        return Candidate(
            genome=genome,
            stages=stages,
            accuracy=measure.accuracy(scores, self.val.y),
            predicted_latency_ms=latency,
            host_latency_ms=host_ms,
            params=sum(p.numel() for p in model.parameters()),
            feasible=options.max_latency_ms is None or latency <= options.max_latency_ms,
            model=model,
        )

    def _train(self, stages: tuple[StageSpec, ...]) -> nn.Module:
        # Same seed for every genome, and the caller's random state left as it was: a
        # genome's accuracy then never depends on when, or after what, it was trained.
        options = self.options
        with torch.random.fork_rng(devices=[]), _torch_threads(options.threads):
            torch.manual_seed(options.seed)
            # Channels-last trained these networks 1.7x (smallest) to 3x (largest) faster
            # on this CPU: PyTorch's depthwise backward is slow on the default layout.
            model: nn.Module = build(stages, self.sample_shape, self.num_classes, options.space)
            # torch's stubs omit `memory_format`, which `Module.to` takes at run time.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            train_options = TrainOptions(
                epochs=options.epochs,
                learning_rate=options.learning_rate,
                batch_size=options.batch_size,
                seed=options.seed,
            )
            model = training.train(model, self.fit, train_options, should_stop=self.should_stop)
            _recalibrate_batchnorm(model, self.fit.x)
        return model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def _recalibrate_batchnorm(model: nn.Module, x: npt.NDArray[np.float32]) -> None:
    """Replace BatchNorm's running statistics by their exact averages over `x`.

    After a few epochs the running averages still lag far behind the weights: on 240
    digits and two epochs, candidates scored 0.05 to 0.12 (chance) in eval mode and 0.67
    to 0.70 after this pass, which costs one forward pass and changes no weight.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over all batches
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), 256):
            model(torch.from_numpy(x[start : start + 256]))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Train on `count` threads, then give torch back its setting.

    The candidates are tiny: one thread trained a batch of 64 in 57 ms here, while two
    threads on this 2-core machine, with other processes busy, took 1.07 s (OpenMP's
    threads wait on each other whenever one of them is descheduled).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Reporter:
    """Tells the caller about each candidate, as a fraction of the generations run."""

    def __init__(self, options: NasOptions, on_progress: Progress | None) -> None:
        self.options = options
        self.on_progress = on_progress
        self.generation = 0  # generations finished

    def __call__(self, index: int, count: int, candidate: Candidate, cached: bool) -> None:
        if self.on_progress is None:
            return
        total = self.options.generations
        done = min((self.generation + (index + 1) / count) / total, 1.0)
        note = " (seen before)" if cached else ""
        self.on_progress(
            done,
            f"generation {self.generation + 1}/{total}, candidate {index + 1}/{count}: "
            f"accuracy {candidate.accuracy:.3f}, {candidate.predicted_latency_ms:.3g} ms on "
            f"{self.options.profile.name}{note}",
        )


class _NasProblem(Problem):  # type: ignore[misc]
    """Objectives (-accuracy, predicted latency) and the latency budget, for pymoo."""

    def __init__(self, evaluator: _Evaluator, on_candidate: _Reporter) -> None:
        options = evaluator.options
        super().__init__(
            n_var=options.space.n_genes,
            n_obj=2,
            n_ieq_constr=0 if options.max_latency_ms is None else 1,
            xl=np.zeros(options.space.n_genes),
            xu=options.space.upper.astype(np.float64),
            vtype=int,
        )
        self.evaluator = evaluator
        self.on_candidate = on_candidate

    def _evaluate(
        self, X: npt.NDArray[Any], out: dict[str, Any], *args: Any, **kwargs: Any
    ) -> None:
        upper = self.evaluator.options.space.upper
        genomes = np.clip(np.rint(X).astype(np.int64), 0, upper)
        found = []
        for index, row in enumerate(genomes):
            candidate, cached = self.evaluator(tuple(int(g) for g in row))
            found.append(candidate)
            self.on_candidate(index, len(genomes), candidate, cached)
        out["F"] = np.array([[-c.accuracy, c.predicted_latency_ms] for c in found])
        budget = self.evaluator.options.max_latency_ms
        if budget is not None:
            out["G"] = np.array([[c.predicted_latency_ms - budget] for c in found])


def _algorithm(population: int) -> NSGA2:
    # The integer recipe of pymoo's documentation: real-valued SBX and polynomial mutation,
    # rounded back onto the integer grid; duplicates are dropped before they are evaluated.
    return NSGA2(
        pop_size=population,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )


def pareto_front(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """The feasible candidates no other feasible one beats on both accuracy and latency,
    fastest first."""
    feasible = [c for c in candidates if c.feasible]
    front = [
        c
        for c in feasible
        if not any(
            o.accuracy >= c.accuracy
            and o.predicted_latency_ms <= c.predicted_latency_ms
            and (o.accuracy > c.accuracy or o.predicted_latency_ms < c.predicted_latency_ms)
            for o in feasible
        )
    ]
    return tuple(sorted(front, key=lambda c: (c.predicted_latency_ms, -c.accuracy, c.genome)))


# --- entry point --------------------------------------------------------------------------


def search(
    train: Data,
    sample_shape: Sequence[int],
    num_classes: int,
    options: NasOptions | None = None,
    on_progress: Progress | None = None,
    should_stop: StopCheck | None = None,
    table: LatencyTable | None = None,
) -> NasResult:
    """Search the family for the accuracy-latency front on `options.profile`.

    `train` must be labelled; a part of it scores the candidates. Pass a `table` to reuse
    measured latencies (and to reproduce a run exactly); it is filled in place.
    """
    options = options if options is not None else NasOptions()
    shape = _check_inputs(train, sample_shape, num_classes)
    table = table if table is not None else LatencyTable()
    measured_before = table.measuring_s
    fit, val = split_holdout(train, options.validation_fraction, options.seed)
    evaluator = _Evaluator(fit, val, shape, num_classes, options, table, should_stop)
    started = time.perf_counter()
    reporter = _Reporter(options, on_progress)
    problem = _NasProblem(evaluator, reporter)
    algorithm = _algorithm(options.population)
    algorithm.setup(problem, termination=("n_gen", options.generations), seed=options.seed)
    history = []
    while algorithm.has_next():
        offspring = algorithm.ask()
        algorithm.evaluator.eval(problem, offspring)
        algorithm.tell(infills=offspring)
        reporter.generation += 1
        history.append(_record(reporter.generation, evaluator, started))
    candidates = tuple(evaluator.cache.values())
    front = pareto_front(candidates)
    if not front:
        raise CompressionError(
            f"no candidate met the latency budget of {options.max_latency_ms} ms on "
            f"{options.profile.name}; the fastest took "
            f"{min(c.predicted_latency_ms for c in candidates):.3g} ms",
            "parameters.max_latency_ms",
        )
    return NasResult(
        front=front,
        candidates=candidates,
        history=tuple(history),
        lut_entries=len(table),
        lut_seconds=table.measuring_s - measured_before,
        host_gflops=table.host_gflops,
        profile=options.profile,
        seconds=time.perf_counter() - started,
    )


def _record(generation: int, evaluator: _Evaluator, started: float) -> GenerationRecord:
    front = pareto_front(list(evaluator.cache.values()))
    return GenerationRecord(
        generation=generation,
        evaluated=len(evaluator.cache),
        front_size=len(front),
        best_accuracy=max((c.accuracy for c in front), default=math.nan),
        fastest_ms=min((c.predicted_latency_ms for c in front), default=math.nan),
        seconds=time.perf_counter() - started,
    )


def _check_inputs(data: Data, sample_shape: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """Refuse data and shapes the family cannot be trained or scored on."""
    shape = tuple(int(d) for d in sample_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise CompressionError(
            f"architecture search needs image inputs (channels, height, width), not {shape}",
            "calib",
        )
    if data.sample_shape != shape:
        raise CompressionError(
            f"samples have shape {data.sample_shape}, but the model takes {shape}", "calib"
        )
    if data.y is None:
        raise CompressionError(
            "architecture search trains candidates and needs labels ('y')", "calib"
        )
    if len(data) < MIN_SAMPLES:
        raise CompressionError(
            f"at least {MIN_SAMPLES} labelled samples are needed, not {len(data)}", "calib"
        )
    if num_classes < 2:
        raise CompressionError(f"needs at least 2 classes, not {num_classes}", "model")
    check_labels(data, num_classes, "calib")
    return shape
