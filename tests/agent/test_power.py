"""Power: the linear model, RAPL counters (fake powercap tree) and the choice between them."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent import power
from edge_agent.power import (
    FallbackPowerSource,
    LinearPowerModel,
    ModelPowerSource,
    PowerUnavailable,
    RaplPowerSource,
    RaplReader,
    choose_power_source,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = 1000) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"{label}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


def test_linear_model_interpolates_and_clamps() -> None:
    model = LinearPowerModel(idle_w=2.0, busy_w=10.0)
    assert model.power_w(0.0) == 2.0
    assert model.power_w(0.5) == 6.0
    assert model.power_w(1.0) == 10.0
    assert model.power_w(-1.0) == 2.0
    assert model.power_w(7.0) == 10.0


def test_model_source_integrates_energy_cumulatively() -> None:
    clock = FakeClock()
    source = ModelPowerSource(LinearPowerModel(2.0, 10.0), clock)
    clock.now += 10.0
    first = source.read(0.5)  # 6 W for 10 s
    clock.now += 5.0
    second = source.read(1.0)  # 10 W for 5 s
    assert (first.power_w, first.energy_j) == (6.0, 60.0)
    assert (second.power_w, second.energy_j) == (10.0, 110.0)


def test_rapl_sums_top_level_zones_and_ignores_subzones(tmp_path: Path) -> None:
    package0 = make_zone(tmp_path, "intel-rapl:0", "package-0", 100, max_uj=10**9)
    package1 = make_zone(tmp_path, "intel-rapl:1", "package-1", 500, max_uj=10**9)
    core = make_zone(tmp_path, "intel-rapl:0:0", "core", 0, max_uj=10**9)
    reader = RaplReader(tmp_path)
    set_energy(package0, 100 + 2_000_000)
    set_energy(package1, 500 + 1_000_000)
    set_energy(core, 5_000_000)
    assert reader.energy_j() == pytest.approx(3.0)


def test_rapl_handles_counter_wraparound(tmp_path: Path) -> None:
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    reader = RaplReader(tmp_path)
    set_energy(zone, 950_000)
    assert reader.energy_j() == pytest.approx(0.05)
    set_energy(zone, 50_000)  # wrapped: 50 000 to the top, then 50 000 more
    assert reader.energy_j() == pytest.approx(0.15)
    set_energy(zone, 60_000)
    assert reader.energy_j() == pytest.approx(0.16)


def test_rapl_prefers_psys_over_packages(tmp_path: Path) -> None:
    package = make_zone(tmp_path, "intel-rapl:0", "package-0", 0, max_uj=10**9)
    psys = make_zone(tmp_path, "intel-rapl:1", "psys", 0, max_uj=10**9)
    reader = RaplReader(tmp_path)
    set_energy(package, 1_000_000)
    set_energy(psys, 3_000_000)
    assert reader.energy_j() == pytest.approx(3.0)


def test_rapl_power_is_energy_over_time(tmp_path: Path) -> None:
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 0, max_uj=10**12)
    clock = FakeClock()
    source = RaplPowerSource(RaplReader(tmp_path), clock)
    clock.now += 2.0
    set_energy(zone, 30_000_000)
    reading = source.read(0.0)
    assert (reading.power_w, reading.energy_j) == (15.0, 30.0)


def test_missing_tree_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PowerUnavailable):
        RaplReader(tmp_path / "absent")
    with pytest.raises(PowerUnavailable):
        RaplReader(tmp_path)  # exists, but holds no zone


def test_unreadable_counter_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Since Linux 5.10 energy_uj is root-only; tests may run as root, so fake the refusal.
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0)

    def refuse(path: Path) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(power, "_read_int", refuse)
    with pytest.raises(PowerUnavailable, match="Permission denied"):
        RaplReader(tmp_path)


def test_choose_uses_rapl_when_readable_else_the_model(tmp_path: Path) -> None:
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    assert choose_power_source(2.0, 10.0, tmp_path).name == "rapl"
    assert choose_power_source(2.0, 10.0, tmp_path / "absent").name == "model"


def test_fallback_keeps_energy_monotonic_when_rapl_fails(tmp_path: Path) -> None:
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 0, max_uj=10**12)
    clock = FakeClock()
    source = FallbackPowerSource(
        RaplPowerSource(RaplReader(tmp_path), clock),
        ModelPowerSource(LinearPowerModel(2.0, 10.0), clock),
    )
    clock.now += 1.0
    set_energy(zone, 50_000_000)
    assert source.read(0.0).energy_j == 50.0
    (zone / "energy_uj").unlink()  # the counter disappears (permissions changed, module gone)
    clock.now += 1.0
    after = source.read(1.0)  # the model: 10 W for the 1 s since the last good read
    assert source.name == "model"
    assert after.energy_j == pytest.approx(60.0)
