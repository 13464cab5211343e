"""Power and cumulative energy: RAPL counters where readable, else a linear model."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

POWERCAP_ROOT = Path("/sys/class/powercap")
# Top-level zones only ("intel-rapl:0"); sub-zones ("intel-rapl:0:0") are parts of them.
TOP_LEVEL_ZONE = re.compile(r"^intel-rapl:\d+$")


class PowerUnavailable(Exception):
    """RAPL counters are absent or unreadable (since Linux 5.10 they are root-only)."""


@dataclass(frozen=True)
class PowerReading:
    power_w: float
    energy_j: float  # cumulative since the source was created (the agent start)


class PowerSource(Protocol):
    @property
    def name(self) -> str:
        """Where the numbers come from ("rapl" or "model"), for the logs."""
        ...

    def read(self, utilisation: float) -> PowerReading:
        """Current power and cumulative energy; ``utilisation`` is 0..1 since the last read."""
        ...


def _read_int(path: Path) -> int:
    return int(path.read_text(encoding="ascii").strip())


@dataclass
class _RaplZone:
    energy_path: Path
    max_range_uj: int
    last_uj: int


class RaplReader:
    """Cumulative energy from Intel/AMD RAPL powercap counters.

    The counters wrap at ``max_energy_range_uj``; every read adds the forward distance
    since the previous read, so reads must come more often than one wrap period (tens
    of seconds to hours depending on the CPU), which a heartbeat interval satisfies.
    """

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self._zones = self._open_zones(root)
        self._total_uj = 0

    @staticmethod
    def _open_zones(root: Path) -> list[_RaplZone]:
        try:
            candidates = sorted(p for p in root.iterdir() if TOP_LEVEL_ZONE.match(p.name))
        except OSError as exc:
            raise PowerUnavailable(f"no powercap tree at {root}: {exc}") from exc
        zones = []
        for zone_dir in candidates:
            try:
                name = (zone_dir / "name").read_text(encoding="ascii").strip()
                zone = _RaplZone(
                    energy_path=zone_dir / "energy_uj",
                    max_range_uj=_read_int(zone_dir / "max_energy_range_uj"),
                    last_uj=_read_int(zone_dir / "energy_uj"),
                )
            except (OSError, ValueError) as exc:
                raise PowerUnavailable(f"cannot read {zone_dir}: {exc}") from exc
            # "psys" already covers the whole platform (packages included): use it alone.
            if name == "psys":
                return [zone]
            zones.append(zone)
        if not zones:
            raise PowerUnavailable(f"no RAPL zones under {root}")
        return zones

    def energy_j(self) -> float:
        """Joules consumed since this reader was created."""
        for zone in self._zones:
            try:
                now_uj = _read_int(zone.energy_path)
            except (OSError, ValueError) as exc:
                raise PowerUnavailable(f"cannot read {zone.energy_path}: {exc}") from exc
            delta = now_uj - zone.last_uj
            if delta < 0:  # the counter wrapped around since the last read
                delta += zone.max_range_uj
            zone.last_uj = now_uj
            self._total_uj += delta
        return self._total_uj / 1e6


@dataclass(frozen=True)
class LinearPowerModel:
    """P = idle + (busy - idle) * utilisation: the usual first-order server power model."""

    idle_w: float
    busy_w: float

    def power_w(self, utilisation: float) -> float:
        clamped = min(max(utilisation, 0.0), 1.0)
        return self.idle_w + (self.busy_w - self.idle_w) * clamped


class ModelPowerSource:
    """Integrates the linear model over time; the utilisation is an average over the gap."""

    name = "model"

    def __init__(
        self, model: LinearPowerModel, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._model = model
        self._clock = clock
        self._last_t = clock()
        self._energy_j = 0.0

    def read(self, utilisation: float) -> PowerReading:
        now = self._clock()
        power = self._model.power_w(utilisation)
        self._energy_j += power * max(now - self._last_t, 0.0)
        self._last_t = now
        return PowerReading(power_w=round(power, 3), energy_j=round(self._energy_j, 3))


class RaplPowerSource:
    """Measured energy; power is the average over the gap since the previous read."""

    name = "rapl"

    def __init__(self, reader: RaplReader, clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = reader
        self._clock = clock
        self._last_t = clock()
        self._last_energy_j = 0.0
        self._last_power_w = 0.0

    def read(self, utilisation: float) -> PowerReading:
        now = self._clock()
        energy = self._reader.energy_j()
        elapsed = now - self._last_t
        if elapsed > 0:
            self._last_power_w = (energy - self._last_energy_j) / elapsed
        self._last_t, self._last_energy_j = now, energy
        return PowerReading(power_w=round(self._last_power_w, 3), energy_j=round(energy, 3))


class FallbackPowerSource:
    """RAPL until it fails (e.g. permissions change), then the model, keeping energy monotonic."""

    def __init__(self, primary: RaplPowerSource, fallback: ModelPowerSource) -> None:
        self._primary: RaplPowerSource | None = primary
        self._fallback = fallback
        self._energy_offset_j = 0.0  # RAPL energy at the last good read
        self._model_base_j = 0.0  # model energy at that same moment

    @property
    def name(self) -> str:
        return self._primary.name if self._primary else self._fallback.name

    def read(self, utilisation: float) -> PowerReading:
        if self._primary is not None:
            try:
                reading = self._primary.read(utilisation)
            except PowerUnavailable as exc:
                log.warning("RAPL stopped working (%s); using the power model from now on", exc)
                self._primary = None
            else:
                self._energy_offset_j = reading.energy_j
                # Read the model too so that, after a switch, it integrates only the new gap.
                self._model_base_j = self._fallback.read(utilisation).energy_j
                return reading
        modelled = self._fallback.read(utilisation)
        energy = self._energy_offset_j + modelled.energy_j - self._model_base_j
        return PowerReading(modelled.power_w, round(energy, 3))


def choose_power_source(
    idle_w: float,
    busy_w: float,
    powercap_root: Path = POWERCAP_ROOT,
    clock: Callable[[], float] = time.monotonic,
) -> PowerSource:
    """RAPL when its counters are readable, else the linear model from the profile."""
    model = ModelPowerSource(LinearPowerModel(idle_w, busy_w), clock)
    try:
        reader = RaplReader(powercap_root)
    except PowerUnavailable as exc:
        log.info("power from the linear model (%s)", exc)
        return model
    log.info("power from RAPL counters under %s", powercap_root)
    return FallbackPowerSource(RaplPowerSource(reader, clock), model)
