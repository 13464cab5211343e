"""Serving the active model: streams, accuracy, switching models, and the telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.inference import (
    InferenceService,
    InferenceStats,
    InputStream,
    load_stream,
)
from edge_agent.manifest import parse_manifest
from edge_agent.modelstore import InstalledVersion, ModelStore
from edge_agent.power import LinearPowerModel, ModelPowerSource
from edge_agent.telemetry import TelemetrySampler

from .models import io_for, matmul_model
from .signing import manifest_body
from .standin import wait_until

# Logits copy the first three features, so the label argmax(x[:, :3]) is always right...
IDENTITY = matmul_model()
# ...and with each class's feature moved to the next class, it is always wrong.
SHIFTED = matmul_model(weights=np.roll(np.eye(4, 3, dtype=np.float32), 1, axis=1))
RNG = np.random.default_rng(3)
X = RNG.standard_normal((16, 4)).astype(np.float32)
Y = X[:, :3].argmax(axis=1)


def installed(tmp_path: Path, data: bytes, version: int) -> InstalledVersion:
    store = ModelStore(tmp_path)
    manifest = parse_manifest(manifest_body(version, data, io=io_for()))
    assert manifest.artifact is not None
    part = store.part_path(manifest.artifact.sha256)
    part.write_bytes(data)
    return store.stage(manifest, part)


@pytest.fixture
def service() -> Iterator[InferenceService]:
    running = InferenceService(500.0, InputStream(X, Y), InferenceStats()).start()
    yield running
    running.stop()


def test_labelled_inputs_give_accuracy_and_latency(
    service: InferenceService, tmp_path: Path
) -> None:
    service.use(installed(tmp_path, IDENTITY, 1))
    wait_until(lambda: service.stats.pending >= 20)
    window = service.stats.take()
    assert window.count >= 20 and window.accuracy == 1.0
    assert window.latencies_ms is not None
    p50, p95, p99 = window.latencies_ms
    assert 0 < p50 <= p95 <= p99


def test_a_switch_reloads_the_model(service: InferenceService, tmp_path: Path) -> None:
    service.use(installed(tmp_path, IDENTITY, 1))
    wait_until(lambda: service.stats.pending >= 5)
    service.use(installed(tmp_path, SHIFTED, 2))
    wait_until(lambda: service.stats.take().accuracy == 0.0)


def test_no_active_model_means_no_inference(service: InferenceService, tmp_path: Path) -> None:
    service.use(installed(tmp_path, IDENTITY, 1))
    wait_until(lambda: service.stats.pending >= 5)
    service.use(None)
    wait_until(lambda: service.stats.take().count == 0)
    assert service.stats.take().count == 0


def test_without_a_stream_inputs_are_random_and_there_is_no_accuracy(tmp_path: Path) -> None:
    service = InferenceService(500.0, None, InferenceStats()).start()
    try:
        service.use(installed(tmp_path, IDENTITY, 1))
        wait_until(lambda: service.stats.pending >= 5)
    finally:
        service.stop()
    window = service.stats.take()
    assert window.count >= 5 and window.accuracy is None


def test_a_stream_that_does_not_fit_the_model_falls_back_to_random_inputs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream = InputStream(np.zeros((4, 7), np.float32), np.zeros(4, np.int64))
    service = InferenceService(500.0, stream, InferenceStats()).start()
    try:
        service.use(installed(tmp_path, IDENTITY, 1))
        wait_until(lambda: service.stats.pending >= 5)
    finally:
        service.stop()
    assert service.stats.take().accuracy is None
    assert "do not fit" in caplog.text


def test_telemetry_samples_carry_the_inference_window(
    service: InferenceService, tmp_path: Path
) -> None:
    sampler = TelemetrySampler(ModelPowerSource(LinearPowerModel(2.0, 8.0)), service.stats)
    assert sampler.sample()["inference_count"] == 0
    service.use(installed(tmp_path, IDENTITY, 1))
    wait_until(lambda: service.stats.pending >= 5)
    sample = sampler.sample()
    assert sample["inference_count"] >= 5
    assert sample["metrics"] == {"accuracy": 1.0}
    assert 0 < sample["latency_p50_ms"] <= sample["latency_p95_ms"]


def save(tmp_path: Path, **arrays: Any) -> Path:
    path = tmp_path / "stream.npz"
    np.savez(path, **arrays)
    return path


def test_a_stream_file_is_loaded_as_float32(tmp_path: Path) -> None:
    stream = load_stream(save(tmp_path, x=X.astype(np.float64), y=Y))
    assert stream.x.dtype == np.float32 and stream.y is not None and len(stream.y) == 16


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": Y}, "no array 'x'"),
        ({"x": np.zeros((0, 4))}, "numeric samples"),
        ({"x": X, "y": Y[:3]}, "integer labels"),
        ({"x": X, "y": Y.astype(np.float32)}, "integer labels"),
    ],
)
def test_a_bad_stream_file_says_what_is_wrong(
    tmp_path: Path,
    arrays: dict[str, np.ndarray],
    message: str,  # type: ignore[type-arg]
) -> None:
    with pytest.raises(ValueError, match=message):
        load_stream(save(tmp_path, **arrays))


def test_a_file_that_is_no_npz_says_so(tmp_path: Path) -> None:
    path = tmp_path / "stream.npz"
    path.write_text("not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        load_stream(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_stream(tmp_path / "missing.npz")
