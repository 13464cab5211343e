"""One telemetry sample, shaped exactly as the heartbeat body's ``telemetry`` items."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import psutil

from edge_agent.power import PowerSource


class InferenceWindowLike(Protocol):
    @property
    def count(self) -> int: ...
    @property
    def latencies_ms(self) -> tuple[float, float, float] | None: ...
    @property
    def accuracy(self) -> float | None: ...


class InferenceSource(Protocol):
    def take(self) -> InferenceWindowLike:
        """What ran since the previous call (see edge_agent.inference.InferenceStats)."""
        ...


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix and millisecond precision."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _percent(value: float) -> float:
    # The protocol caps percentages at 100; rounding noise must not get a batch rejected.
    return round(min(max(value, 0.0), 100.0), 1)


def make_sample(
    ts: str,
    cpu_percent: float,
    memory_percent: float,
    power_w: float,
    energy_j: float,
    inference_count: int = 0,
    latencies_ms: tuple[float, float, float] | None = None,
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    p50, p95, p99 = latencies_ms if latencies_ms is not None else (None, None, None)
    return {
        "ts": ts,
        "cpu_percent": _percent(cpu_percent),
        "memory_percent": _percent(memory_percent),
        "power_w": max(power_w, 0.0),
        "energy_j": max(energy_j, 0.0),
        "inference_count": max(inference_count, 0),
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "metrics": dict(metrics or {}),
    }


class TelemetrySampler:
    """Real measurements of this machine, with the inference statistics when a model serves."""

    def __init__(self, power_source: PowerSource, inference: InferenceSource | None = None) -> None:
        self._power = power_source
        self._inference = inference
        # psutil's non-blocking cpu_percent reports the average since the previous call;
        # the first call has no previous one, so prime it here.
        psutil.cpu_percent(interval=None)

    def sample(self) -> dict[str, Any]:
        cpu = psutil.cpu_percent(interval=None)
        reading = self._power.read(cpu / 100.0)
        window = self._inference.take() if self._inference is not None else None
        return make_sample(
            ts=utc_timestamp(),
            cpu_percent=cpu,
            memory_percent=psutil.virtual_memory().percent,
            power_w=reading.power_w,
            energy_j=reading.energy_j,
            inference_count=window.count if window else 0,
            latencies_ms=window.latencies_ms if window else None,
            metrics={"accuracy": window.accuracy}
            if window is not None and window.accuracy is not None
            else None,
        )
