"""The fleet simulator: seeded device models, and whole runs against the stand-in."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

import edge_agent
from edge_agent.cli import main
from edge_agent.fleet_model import (
    TIER_SPECS,
    city_load,
    cloud_load,
    draw_device,
    latency_percentiles,
)
from edge_agent.simulate import SimConfig, SimStats, run_simulation, tiers_from_mix

from .standin import StandInControlPlane, wait_until

REPO_ROOT = Path(edge_agent.__file__).resolve().parent.parent
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_devices_are_reproducible_from_the_seed() -> None:
    assert draw_device(3, "edge", seed=1).hardware == draw_device(3, "edge", seed=1).hardware
    assert draw_device(3, "edge", seed=1).hardware != draw_device(3, "edge", seed=2).hardware


@pytest.mark.parametrize("tier", ["cloud", "edge", "end"])
def test_hardware_stays_in_the_tier_ranges(tier: str) -> None:
    spec = TIER_SPECS[tier]
    for index in range(30):
        hw = draw_device(index, tier, seed=0).hardware
        assert hw.cpu_cores in spec.cores
        assert spec.idle_w[0] <= hw.power_idle_w <= spec.idle_w[1]
        assert spec.busy_w[0] <= hw.power_busy_w <= spec.busy_w[1]
        assert spec.cost_per_hour[0] <= hw.cost_per_hour <= spec.cost_per_hour[1]
    assert draw_device(0, "end", seed=0).hardware.cost_per_hour == 0.0
    assert draw_device(0, "end", seed=0).hardware.cpu_cores <= 4


def test_city_load_has_a_night_trough_and_rush_hour_peaks() -> None:
    night, morning, midday, evening = (city_load(h) for h in (3.0, 8.0, 11.0, 18.0))
    assert night < 0.15
    assert morning > midday > night
    assert evening > midday
    hours = [h / 4 for h in range(96)]
    city_swing = max(map(city_load, hours)) - min(map(city_load, hours))
    cloud_swing = max(map(cloud_load, hours)) - min(map(cloud_load, hours))
    assert cloud_swing < city_swing / 2
    assert min(map(cloud_load, hours)) > 0.3


def test_samples_follow_the_power_model_and_accumulate_energy() -> None:
    device = draw_device(0, "edge", seed=4)
    hw = device.hardware
    energy = 0.0
    for step in range(50):
        sample = device.sample(NOON, elapsed_s=10.0)
        assert hw.power_idle_w <= sample["power_w"] <= hw.power_busy_w
        util = sample["cpu_percent"] / 100.0
        expected = hw.power_idle_w + (hw.power_busy_w - hw.power_idle_w) * util
        assert sample["power_w"] == pytest.approx(expected, abs=0.05)
        assert sample["energy_j"] >= energy + 10.0 * hw.power_idle_w - 0.1
        energy = sample["energy_j"]
        assert 0 <= sample["memory_percent"] <= 100
        assert sample["inference_count"] >= 0
        p50, p95, p99 = (sample[f"latency_p{p}_ms"] for p in (50, 95, 99))
        assert p50 <= p95 <= p99, step
        assert 0.0 <= sample["metrics"]["accuracy"] <= 1.0


def test_end_devices_infer_at_camera_rates() -> None:
    device = draw_device(0, "end", seed=0)
    counts = [device.sample(NOON, elapsed_s=10.0)["inference_count"] for _ in range(20)]
    assert 0 < sum(counts) / len(counts) < 300  # at most 30/s for 10 s


def test_latency_grows_with_load() -> None:
    idle, busy = latency_percentiles(10.0, 0.1), latency_percentiles(10.0, 0.9)
    assert idle[0] < busy[0] and idle[2] < busy[2]
    assert idle[0] <= idle[1] <= idle[2]


def test_links_point_up_the_hierarchy() -> None:
    assert draw_device(0, "end", seed=0).links()[0]["to"] == "edge"
    assert draw_device(0, "edge", seed=0).links()[0]["to"] == "cloud"
    assert draw_device(0, "cloud", seed=0).links() == []


def test_mix_order_is_stable() -> None:
    assert tiers_from_mix({"end": 2, "cloud": 1, "edge": 1}) == ["cloud", "edge", "end", "end"]


def devices_heard(plane: StandInControlPlane) -> set[str]:
    with plane.lock:
        return {device for device, _ in plane.heartbeats}


def simulate(plane: StandInControlPlane, state_dir: Path, until: Callable[[], bool]) -> SimStats:
    """Run a 4-agent simulation until ``until()`` holds (conditions, not timings, end it)."""
    config = SimConfig(
        server=plane.url,
        token="tet_good",
        mix={"cloud": 1, "edge": 1, "end": 2},
        state_dir=state_dir,
        interval_s=0.1,
        duration_s=20.0,  # a safety net only
        seed=7,
        status_every_s=0.3,
    )
    lines: list[str] = []

    async def run() -> SimStats:
        stop = asyncio.Event()

        async def watch() -> None:
            while not until():
                await asyncio.sleep(0.02)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            return await run_simulation(config, stop, report=lines.append)
        finally:
            watcher.cancel()

    stats = asyncio.run(run())
    assert until(), "the simulation ended before the condition held"
    assert lines[-1] == stats.line()
    return stats


def test_simulation_enrolls_each_agent_once_and_heartbeats(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    def three_heartbeats_each() -> bool:
        with control_plane.lock:
            counts = Counter(device for device, _ in control_plane.heartbeats)
        return len(counts) == 4 and min(counts.values()) >= 3

    stats = simulate(control_plane, tmp_path, three_heartbeats_each)
    assert (stats.enrolled, stats.reused, stats.errors) == (4, 0, 0)
    tiers = sorted(body["tier"] for body in control_plane.enrollments)
    assert tiers == ["cloud", "edge", "end", "end"]
    for index in range(4):
        path = tmp_path / f"sim-{index}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A request cancelled at shutdown may be stored without its agent seeing the answer:
    # at most one per agent.
    stored = len(control_plane.heartbeats)
    assert stored - 4 <= stats.heartbeats <= stored
    for device in devices_heard(control_plane):
        energies = [s["energy_j"] for s in control_plane.received(device)]
        assert energies == sorted(energies)


def test_a_restarted_simulation_reuses_its_devices(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    simulate(control_plane, tmp_path, lambda: len(devices_heard(control_plane)) == 4)
    before = len(control_plane.heartbeats)
    again = simulate(control_plane, tmp_path, lambda: len(control_plane.heartbeats) >= before + 8)
    assert (again.enrolled, again.reused) == (0, 4)
    assert len(control_plane.enrollments) == 4
    assert len(devices_heard(control_plane)) == 4


def test_a_rejected_stored_credential_leads_to_a_new_enrollment(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    simulate(control_plane, tmp_path, lambda: len(devices_heard(control_plane)) == 4)
    control_plane.revoke_all()  # e.g. the server's database was reset
    again = simulate(control_plane, tmp_path, lambda: len(devices_heard(control_plane)) == 8)
    assert (again.reused, again.enrolled, again.stopped_agents) == (4, 4, 0)
    assert len(control_plane.enrollments) == 8


def test_cli_simulate_fails_clearly_when_the_token_is_refused(
    control_plane: StandInControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "simulate",
        "--server",
        control_plane.url,
        "--token",
        "tet_wrong",
        "--mix",
        "end:3",
        "--state-dir",
        str(tmp_path),
        "--duration",
        "5",
    ]
    started = time.monotonic()
    assert main(argv) == 1
    assert time.monotonic() - started < 30.0  # stopped once every agent gave up, not at 60 s
    err = capsys.readouterr().err
    assert "every simulated agent stopped" in err and "token" in err


def test_cli_simulate_runs_for_its_duration(
    control_plane: StandInControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "simulate",
        "--server",
        control_plane.url,
        "--token",
        "tet_good",
        "--count",
        "3",
        "--mix",
        "edge:1,end:2",
        "--state-dir",
        str(tmp_path),
        "--interval",
        "0.1",
        "--duration",
        "0.6",
        "--seed",
        "3",
    ]
    assert main(argv) == 0
    assert "3/3 agents enrolled" in capsys.readouterr().out


def test_sigterm_stops_the_simulator_cleanly(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent",
            "simulate",
            "--server",
            control_plane.url,
            "--token",
            "tet_good",
            "--mix",
            "cloud:1,end:4",
            "--state-dir",
            str(tmp_path),
            "--interval",
            "0.1",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: len(devices_heard(control_plane)) == 5, timeout_s=20.0)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=10)
    assert time.monotonic() - started < 5.0  # aims at ~2 s; loaded CI machines are slower
    assert process.returncode == 0, stderr
    assert "5/5 agents enrolled" in stdout
