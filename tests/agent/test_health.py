"""The onnxruntime health check: a good model passes, every kind of bad one is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.health import HealthCheckSpec, health_check, probe_feed
from edge_agent.manifest import ManifestRefused, Reason, parse_manifest

from .models import io_for, matmul_model
from .signing import manifest_body

GENEROUS = HealthCheckSpec(latency_budget_ms=10_000.0, probe_runs=3)


def io_of(io: dict[str, Any]) -> Any:
    manifest = parse_manifest(manifest_body(1, b"x", io=io))
    assert manifest.io is not None
    return manifest.io


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return path


def failure(path: Path, io: dict[str, Any], spec: HealthCheckSpec = GENEROUS) -> str:
    with pytest.raises(ManifestRefused) as caught:
        health_check(path, io_of(io), spec)
    assert caught.value.reason is Reason.HEALTH_CHECK_FAILED
    return caught.value.detail


def test_a_good_model_passes_and_is_measured(tmp_path: Path) -> None:
    report = health_check(write(tmp_path, matmul_model()), io_of(io_for()), GENEROUS)
    assert report.runs == 3 and 0 < report.p50_ms <= report.p95_ms


def test_no_budget_means_no_latency_limit(tmp_path: Path) -> None:
    spec = HealthCheckSpec(latency_budget_ms=None, probe_runs=1)
    assert health_check(write(tmp_path, matmul_model()), io_of(io_for()), spec).runs == 1


def test_a_model_over_its_latency_budget_fails(tmp_path: Path) -> None:
    spec = HealthCheckSpec(latency_budget_ms=0.0, probe_runs=2)
    assert "exceeds the budget" in failure(write(tmp_path, matmul_model()), io_for(), spec)


def test_an_output_of_the_wrong_shape_fails(tmp_path: Path) -> None:
    path = write(tmp_path, matmul_model(outputs=2))
    io = io_for(outputs=3)
    io["outputs"][0]["shape"] = [None, 3]
    assert "shape [1, 2]" in failure(path, io)


def test_a_corrupt_file_fails_to_load(tmp_path: Path) -> None:
    assert "cannot load" in failure(write(tmp_path, b"\x00not an onnx model" * 10), io_for())


def test_a_missing_input_name_fails(tmp_path: Path) -> None:
    io = io_for()
    io["inputs"][0]["name"] = "image"
    assert "no input 'image'" in failure(write(tmp_path, matmul_model()), io)


def test_an_input_of_the_wrong_shape_fails_the_probe(tmp_path: Path) -> None:
    io = io_for()
    io["inputs"][0]["shape"] = [None, 5]
    assert "probe failed" in failure(write(tmp_path, matmul_model()), io)


def test_an_output_of_the_wrong_dtype_fails(tmp_path: Path) -> None:
    io = io_for()
    io["outputs"][0]["dtype"] = "float64"
    assert "float32" in failure(write(tmp_path, matmul_model()), io)


def test_probes_are_seeded_and_free_axes_are_one() -> None:
    io = io_of(
        {
            "inputs": [
                {"name": "a", "shape": [None, 2], "dtype": "float32"},
                {"name": "b", "shape": [3], "dtype": "int64"},
                {"name": "c", "shape": [], "dtype": "bool"},
            ],
            "outputs": [{"name": "y", "shape": [None], "dtype": "float32"}],
        }
    )
    feed = probe_feed(io, seed=1)
    assert {name: (v.shape, v.dtype) for name, v in feed.items()} == {
        "a": ((1, 2), np.float32),
        "b": ((3,), np.int64),
        "c": ((), np.bool_),
    }
    assert all(np.array_equal(feed[k], probe_feed(io, seed=1)[k]) for k in feed)
