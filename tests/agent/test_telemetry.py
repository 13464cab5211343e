"""A real telemetry sample has exactly the protocol's fields, in range."""

from __future__ import annotations

import re
import time

from edge_agent.power import LinearPowerModel, ModelPowerSource
from edge_agent.telemetry import TelemetrySampler, make_sample, utc_timestamp

SAMPLE_FIELDS = {
    "ts",
    "cpu_percent",
    "memory_percent",
    "power_w",
    "energy_j",
    "inference_count",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "metrics",
}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_sample_has_the_protocol_fields_and_sane_values() -> None:
    sampler = TelemetrySampler(ModelPowerSource(LinearPowerModel(2.0, 10.0)))
    first = sampler.sample()
    time.sleep(0.05)
    second = sampler.sample()
    assert set(first) == SAMPLE_FIELDS
    assert ISO_Z.match(first["ts"])
    for sample in (first, second):
        assert 0.0 <= sample["cpu_percent"] <= 100.0
        assert 0.0 <= sample["memory_percent"] <= 100.0
        assert 2.0 <= sample["power_w"] <= 10.0
        assert sample["inference_count"] == 0
        assert sample["latency_p50_ms"] is None
        assert sample["metrics"] == {}
    assert second["energy_j"] > first["energy_j"] >= 0.0


def test_percentages_are_clamped_to_the_protocol_range() -> None:
    sample = make_sample("2026-01-01T00:00:00.000Z", 100.04, -0.1, 1.0, 2.0)
    assert sample["cpu_percent"] == 100.0
    assert sample["memory_percent"] == 0.0


def test_timestamp_is_utc_with_z() -> None:
    assert ISO_Z.match(utc_timestamp())
