"""The health check a new model must pass before it may serve (docs/rollouts.md).

onnxruntime loads the model, a seeded probe shaped from the manifest's ``io`` runs
through it ``probe_runs`` times, and every output must have the shape and dtype the
manifest promised; with a latency budget, the probe's p50 must stay within it. A model
that passes this is one the inference loop can feed the same way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_agent.client import DEFAULT_PROBE_RUNS
from edge_agent.manifest import IoSignature, ManifestRefused, Reason, TensorSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthCheckSpec:
    """The order's ``health_check``: None as the budget means no latency budget."""

    latency_budget_ms: float | None = None
    probe_runs: int = DEFAULT_PROBE_RUNS


@dataclass(frozen=True)
class HealthReport:
    p50_ms: float
    p95_ms: float
    runs: int


def open_session(model_path: Path) -> ort.InferenceSession:
    """A CPU session that sleeps between runs instead of spinning its threads.

    Spinning would burn the cores the device needs for its other work (and for the
    heartbeats) whenever the model idles between two frames.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings about initialisers are noise here
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def probe_input(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """A random tensor of the spec's dtype and shape, free axes set to 1."""
    shape = tuple(1 if axis is None else axis for axis in spec.shape)
    dtype = np.dtype(spec.dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def probe_feed(io: IoSignature, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {spec.name: probe_input(spec, rng) for spec in io.inputs}


def shape_matches(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(actual) == len(expected) and all(
        want is None or want == got for got, want in zip(actual, expected, strict=True)
    )


def health_check(
    model_path: Path, io: IoSignature, spec: HealthCheckSpec, seed: int = 0
) -> HealthReport:
    """Load, probe and measure the model; ``health_check_failed`` says what went wrong."""
    session = _load(model_path)
    _check_names(session, io)
    feed = probe_feed(io, seed)
    output_names = [output.name for output in io.outputs]
    _run(session, output_names, feed)  # warm-up: the first run pays for lazy initialisation
    latencies_ms = []
    for _ in range(max(1, spec.probe_runs)):
        started = time.perf_counter()
        outputs = _run(session, output_names, feed)
        latencies_ms.append((time.perf_counter() - started) * 1000.0)
        _check_outputs(outputs, io)
    p50, p95 = (float(value) for value in np.percentile(latencies_ms, [50, 95]))
    budget = spec.latency_budget_ms
    if budget is not None and p50 > budget:
        raise _failed(f"the probe's p50 latency {p50:.2f} ms exceeds the budget of {budget} ms")
    return HealthReport(p50, p95, len(latencies_ms))


def _failed(detail: str) -> ManifestRefused:
    return ManifestRefused(Reason.HEALTH_CHECK_FAILED, detail)


def _load(model_path: Path) -> ort.InferenceSession:
    try:
        return open_session(model_path)
    except Exception as exc:  # onnxruntime raises its own types, and RuntimeError, for bad files
        raise _failed(f"onnxruntime cannot load the model: {_first_line(exc)}") from exc


def _check_names(session: ort.InferenceSession, io: IoSignature) -> None:
    for kind, declared, have in (
        ("input", io.inputs, session.get_inputs()),
        ("output", io.outputs, session.get_outputs()),
    ):
        names = [item.name for item in have]
        for spec in declared:
            if spec.name not in names:
                raise _failed(f"the model has no {kind} {spec.name!r} (it has {names})")


def _run(
    session: ort.InferenceSession, names: list[str], feed: dict[str, np.ndarray[Any, Any]]
) -> list[Any]:
    try:
        return list(session.run(names, feed))
    except Exception as exc:
        raise _failed(f"the probe failed: {_first_line(exc)}") from exc


def _check_outputs(outputs: list[Any], io: IoSignature) -> None:
    for spec, value in zip(io.outputs, outputs, strict=True):
        array = np.asarray(value)
        if not shape_matches(array.shape, spec.shape):
            raise _failed(
                f"output {spec.name!r} has shape {list(array.shape)}, "
                f"the manifest says {list(spec.shape)}"
            )
        if array.dtype != np.dtype(spec.dtype):
            raise _failed(f"output {spec.name!r} is {array.dtype}, the manifest says {spec.dtype}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
