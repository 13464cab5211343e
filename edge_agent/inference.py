"""Serving the active model: inference at a steady rate on a thread, and its statistics.

The point is measurement the control plane can act on: the heartbeat's telemetry carries
how many inferences ran, their latency percentiles and, when the input stream has
labels, the accuracy over the window. A rollout's effect on a real device then shows in
numbers, not guesses. Inputs come from an ``.npz`` file (``x``: samples on axis 0,
optional ``y``: integer labels), cycled; without one, random inputs shaped from the
manifest's ``io`` keep the latency figures honest (and there is no accuracy).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.health import open_session, probe_feed, probe_input, shape_matches
from edge_agent.manifest import IoSignature
from edge_agent.modelstore import InstalledVersion

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class InputStream:
    x: Array  # float32, one sample per row of axis 0
    y: Array | None  # integer labels, one per sample


def load_stream(path: Path) -> InputStream:
    """Read an input stream; ValueError saying what is wrong with the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path} as an .npz file: {exc}") from exc
    x, y = arrays.get("x"), arrays.get("y")
    if x is None:
        raise ValueError(f"{path} has no array 'x' (it has {sorted(arrays)})")
    if x.ndim < 1 or len(x) == 0 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"'x' in {path} must hold numeric samples on axis 0, got {x.shape}")
    if y is not None and (y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"'y' in {path} must be {len(x)} integer labels, got {y.dtype}{y.shape}")
    return InputStream(x.astype(np.float32, copy=False), y)


@dataclass(frozen=True)
class InferenceWindow:
    """What ran since the previous telemetry sample."""

    count: int
    latencies_ms: tuple[float, float, float] | None  # p50, p95, p99
    accuracy: float | None  # None: no labels


class InferenceStats:
    """Latencies and hits since the last ``take``, shared by the inference and sampler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._labelled = 0
        self._correct = 0

    def record(self, latency_ms: float, correct: bool | None) -> None:
        with self._lock:
            self._latencies.append(latency_ms)
            if correct is not None:
                self._labelled += 1
                self._correct += int(correct)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._latencies)

    def take(self) -> InferenceWindow:
        with self._lock:
            latencies, labelled, correct = self._latencies, self._labelled, self._correct
            self._latencies, self._labelled, self._correct = [], 0, 0
        if not latencies:
            return InferenceWindow(0, None, None)
        p50, p95, p99 = (float(v) for v in np.percentile(latencies, [50, 95, 99]))
        return InferenceWindow(
            len(latencies), (p50, p95, p99), correct / labelled if labelled else None
        )


class _Model:
    """A loaded session and how to feed it from the stream (or from random probes)."""

    def __init__(self, installed: InstalledVersion, stream: InputStream | None) -> None:
        io = installed.manifest.io
        assert io is not None
        self.sha256 = installed.sha256
        self.io = io
        self.session = open_session(installed.model_path.resolve())
        self.output_names = [spec.name for spec in io.outputs]
        self.fixed_feed = probe_feed(io)
        self.stream = stream if stream is not None and _fits(stream, io) else None
        if stream is not None and self.stream is None:
            log.error(
                "the --stream samples %s do not fit the model's input %s; feeding random inputs",
                list(stream.x.shape[1:]),
                list(io.inputs[0].shape),
            )
        self.rng = np.random.default_rng(0)
        self.failed_runs = 0

    def feed(self, index: int) -> tuple[dict[str, Array], int | None]:
        """The inputs for run ``index``, and its label when there is one."""
        first = self.io.inputs[0]
        feed = dict(self.fixed_feed)
        if self.stream is None:
            feed[first.name] = probe_input(first, self.rng)
            return feed, None
        row = index % len(self.stream.x)
        feed[first.name] = self.stream.x[row : row + 1].astype(first.dtype, copy=False)
        label = None if self.stream.y is None else int(self.stream.y[row])
        return feed, label


def _fits(stream: InputStream, io: IoSignature) -> bool:
    """Whether one sample, with a batch axis of 1 in front, has the first input's shape."""
    return shape_matches((1, *stream.x.shape[1:]), io.inputs[0].shape)


class InferenceService:
    """Runs the active model ``rate_hz`` times a second; ``use`` switches models."""

    def __init__(self, rate_hz: float, stream: InputStream | None, stats: InferenceStats) -> None:
        self._period_s = 1.0 / rate_hz
        self._stream = stream
        self.stats = stats
        self._lock = threading.Lock()
        self._wanted: InstalledVersion | None = None
        self._changed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def use(self, installed: InstalledVersion | None) -> None:
        """Serve ``installed`` from the next run on (None: serve nothing)."""
        with self._lock:
            self._wanted, self._changed = installed, True

    def start(self) -> InferenceService:
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        model: _Model | None = None
        index = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            model = self._switch(model)
            if model is not None:
                self._infer(model, index)
                index += 1
            next_at = max(next_at + self._period_s, time.monotonic())  # late: no burst after
            self._stop.wait(max(next_at - time.monotonic(), 0.0))

    def _switch(self, model: _Model | None) -> _Model | None:
        with self._lock:
            if not self._changed:
                return model
            wanted, self._changed = self._wanted, False
        if wanted is None:
            log.info("inference stopped: no active model")
            return None
        try:
            loaded = _Model(wanted, self._stream)
        except Exception:
            log.exception("cannot load the active model %s for inference", wanted.sha256[:12])
            return None
        log.info("inference on model version %d (%s)", wanted.version, wanted.sha256[:12])
        return loaded

    def _infer(self, model: _Model, index: int) -> None:
        feed, label = model.feed(index)
        started = time.perf_counter()
        try:
            outputs = model.session.run(model.output_names, feed)
        except Exception as exc:
            model.failed_runs += 1
            if model.failed_runs == 1:  # once per model: the same error would flood the log
                log.error("inference on %s failed: %s", model.sha256[:12], exc)
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        correct = None
        if label is not None:
            predicted = np.asarray(outputs[0]).reshape(1, -1).argmax(axis=1)[0]
            correct = bool(predicted == label)
        self.stats.record(latency_ms, correct)
