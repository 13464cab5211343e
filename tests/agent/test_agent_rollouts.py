"""``python -m edge_agent run`` as a process, following signed orders from the stand-in."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import edge_agent
from edge_agent.state import AgentState, save_agent_state

from .models import io_for, matmul_model
from .standin import StandInControlPlane, wait_until

REPO_ROOT = Path(edge_agent.__file__).resolve().parent.parent
MODEL_A = matmul_model()
MODEL_B = matmul_model(weights=2 * np.eye(4, 3, dtype=np.float32))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start_agent(
    plane: StandInControlPlane,
    state_dir: Path,
    pinned: bool = True,
    extra: Sequence[str] = (),
) -> tuple[str, subprocess.Popen[str]]:
    device_id, credential = plane.register()
    state = AgentState(
        plane.url,
        device_id,
        credential,
        10.0,
        {"power_idle_w": 2.0, "power_busy_w": 8.0},
        "end",
        plane.signing_info() if pinned else None,
    )
    save_agent_state(state_dir, state)
    command = ["-m", "edge_agent", "run", "--state-dir", str(state_dir), "--interval", "0.1"]
    process = subprocess.Popen(
        [sys.executable, *command, *extra],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return device_id, process


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    return stderr


def last_state(plane: StandInControlPlane, device_id: str) -> tuple[str, str] | None:
    reports = plane.reports(device_id)
    return (reports[-1]["state"], reports[-1]["reason"]) if reports else None


def test_a_running_agent_installs_orders_serves_them_and_keeps_heartbeating(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    np.savez(tmp_path / "stream.npz", x=x, y=x[:, :3].argmax(axis=1))  # what the models get right
    first = control_plane.publish(MODEL_A, io_for())
    state_dir = tmp_path / "state"
    flags = ["--stream", str(tmp_path / "stream.npz"), "--inference-rate", "50"]
    device_id, process = start_agent(control_plane, state_dir, extra=flags)
    try:
        wait_until(lambda: last_state(control_plane, device_id) == ("active", ""), 20.0)
        second = control_plane.publish(MODEL_B, io_for())
        wait_until(
            lambda: (
                control_plane.reports(device_id)[-1]["deployment_id"] == second["deployment_id"]
                and last_state(control_plane, device_id) == ("active", "")
            ),
            20.0,
        )
        wait_until(lambda: any(s["metrics"] for s in control_plane.received(device_id)))
        profile = control_plane.publish_profile(MODEL_A, io_for(), runs=4)
        wait_until(lambda: bool(control_plane.profile_results), 20.0)
    finally:
        stop(process)
    reports = control_plane.reports(device_id)
    assert reports[0]["deployment_id"] == first["deployment_id"]
    assert reports[-1]["active"] == {"sha256": sha(MODEL_B), "version": 2}
    assert os.readlink(state_dir / "models" / "active") == f"versions/{sha(MODEL_B)}"
    assert os.readlink(state_dir / "models" / "previous") == f"versions/{sha(MODEL_A)}"
    served = [s for s in control_plane.received(device_id) if s["inference_count"]]
    assert served and all(s["metrics"] == {"accuracy": 1.0} for s in served)
    assert all(s["latency_p50_ms"] > 0 for s in served)
    ((device, result),) = control_plane.profile_results
    assert (device, result["run_id"], result["state"]) == (device_id, profile["run_id"], "measured")


def test_a_nudge_brings_an_order_long_before_the_next_heartbeat(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    device_id, process = start_agent(control_plane, tmp_path, extra=["--interval", "600"])
    try:
        wait_until(lambda: control_plane.websocket_devices() == [device_id], 20.0)
        wait_until(lambda: len(control_plane.received(device_id)) == 1)
        control_plane.publish(MODEL_A, io_for())
        control_plane.nudge(device_id)
        wait_until(lambda: last_state(control_plane, device_id) == ("active", ""), 20.0)
    finally:
        stop(process)


def test_an_agent_enrolled_before_signed_rollouts_refuses_orders_and_says_why(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    control_plane.publish(MODEL_A, io_for())
    device_id, process = start_agent(control_plane, tmp_path, pinned=False)
    try:
        wait_until(lambda: last_state(control_plane, device_id) == ("failed", "unsigned"), 20.0)
    finally:
        stderr = stop(process)
    assert "enroll it again" in stderr
    assert not (tmp_path / "models" / "active").exists()
