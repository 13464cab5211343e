"""The real agent against the real server: enroll, report, ride out a server outage on its
on-disk spool without losing or repeating a sample, and stop cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import itertools
import signal
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devices.actions import create_enrollment_token
from devices.models import Device, DeviceStatus, Telemetry
from tests.conftest import ROOT
from tests.integration.processes import PYTHON, Process, Processes

pytestmark = pytest.mark.service

INTERVAL_S = 1.0
# The agent jitters its interval by 10 %; a loaded CI machine adds scheduling delay.
MAX_GAP_S = 2 * INTERVAL_S + 0.5
OUTAGE_SAMPLES = 3


def spool_state(state_dir: Path) -> tuple[list[str], dict[str, int]]:
    """The timestamps still queued in the agent's spool, and its loss counters."""
    path = state_dir / "spool.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        queued = [row[0] for row in db.execute("SELECT json_extract(body, '$.ts') FROM samples")]
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
    return queued, counters


def stored(device_id: str, field: str = "ts") -> list[Any]:
    samples = Telemetry.objects.filter(device_id=device_id).order_by("ts")
    return list(samples.values_list(field, flat=True))


def agent_log_count(agent: Process, text: str) -> int:
    return agent.log().count(text)


def test_agent_enrolls_reports_and_loses_nothing_across_a_server_outage(
    subprocess_env: dict[str, str], processes: Processes, tmp_path: Path
) -> None:
    env = subprocess_env
    _, token = create_enrollment_token(created_by=None, ttl=timedelta(minutes=10))
    server = processes.server(env)
    processes.wait_server_ready(server)
    state_dir = tmp_path / "agent-state"

    enrolled = subprocess.run(
        [
            PYTHON,
            "-m",
            "edge_agent",
            "enroll",
            "--server",
            server.url,
            "--token",
            token,
            "--state-dir",
            str(state_dir),
            "--name",
            "cam-e2e",
            "--tier",
            "end",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = enrolled.stdout.strip()
    device = Device.objects.get(pk=device_id)
    assert (device.name, device.tier, device.status) == ("cam-e2e", "end", DeviceStatus.PENDING)

    agent = processes.start(
        "agent",
        [
            PYTHON,
            "-m",
            "edge_agent",
            "run",
            "--state-dir",
            str(state_dir),
            "--interval",
            str(INTERVAL_S),
        ],
        env,
    )
    processes.wait_until(lambda: len(stored(device_id)) >= 3, "telemetry to arrive", 30)
    device.refresh_from_db()
    assert device.status == DeviceStatus.ONLINE
    assert device.last_cpu_percent is not None and device.last_energy_j is not None

    # --- the server goes away; the agent keeps sampling into its spool ---------------
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.process.stop() in (0, -signal.SIGTERM), server.process.tail()
    stored_before_outage = len(stored(device_id))
    processes.wait_until(
        lambda: len(spool_state(state_dir)[0]) >= OUTAGE_SAMPLES,
        f"{OUTAGE_SAMPLES} samples spooled during the outage",
        30,
    )
    assert "server unavailable" in agent.log()
    assert len(stored(device_id)) == stored_before_outage

    # --- back on the same port: the backlog drains --------------------------------
    restarted = processes.server(env, port=server.port, name="server-restarted")
    processes.wait_server_ready(restarted)
    processes.wait_until(
        lambda: "server back after" in agent.log(), "the agent to reach the server again", 60
    )
    drained_to = len(stored(device_id))
    assert drained_to >= stored_before_outage + OUTAGE_SAMPLES
    # Two more heartbeats after the backlog, then a clean stop.
    processes.wait_until(
        lambda: len(stored(device_id)) >= drained_to + 2, "heartbeats after the outage", 30
    )

    agent.signal_group(signal.SIGTERM)
    started = time.monotonic()
    returncode = agent.popen.wait(timeout=10)
    agent.stopped = True
    assert returncode == 0, agent.tail()
    assert time.monotonic() - started < 5, "the agent took too long to stop"

    # --- every sample the agent took arrived exactly once, with no hole -------------
    times = stored(device_id)
    queued, counters = spool_state(state_dir)
    assert counters.get("dropped_total", 0) == 0 and counters.get("rejected_total", 0) == 0
    # A sample taken just before SIGTERM may still wait in the spool for the next run.
    assert len(queued) <= 1, queued
    assert len(set(times)) == len(times), "a sample was stored twice"
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert max(gaps) <= MAX_GAP_S, f"samples missing: gaps {gaps}"
    span_s = (times[-1] - times[0]).total_seconds()
    assert len(times) >= span_s / (INTERVAL_S * 1.1), (len(times), span_s)
    energies = stored(device_id, "energy_j")
    assert None not in energies
    assert energies == sorted(energies), "cumulative energy went backwards"
