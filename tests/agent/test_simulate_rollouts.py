"""Simulated agents follow signed orders: real downloads, shared files, injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.simulate import SimConfig, SimStats, run_simulation

from .models import io_for, matmul_model
from .standin import StandInControlPlane

MODEL_A = matmul_model()
MODEL_B = matmul_model(weights=2 * np.eye(4, 3, dtype=np.float32))
AGENTS = 4


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def simulate(
    plane: StandInControlPlane,
    state_dir: Path,
    until: Callable[[], bool],
    faulty: frozenset[int] = frozenset(),
) -> SimStats:
    config = SimConfig(
        server=plane.url,
        token="tet_good",
        mix={"edge": 2, "end": 2},
        state_dir=state_dir,
        interval_s=0.05,
        duration_s=30.0,  # a safety net only
        seed=1,
        status_every_s=0.5,
        faulty=faulty,
    )

    async def run() -> SimStats:
        stop = asyncio.Event()

        async def watch() -> None:
            while not until():
                await asyncio.sleep(0.02)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            return await run_simulation(config, stop, report=lambda line: None)
        finally:
            watcher.cancel()

    stats = asyncio.run(run())
    assert until(), "the simulation ended before the condition held"
    return stats


def last_reports(plane: StandInControlPlane, deployment_id: str) -> dict[str, dict[str, Any]]:
    """Each device's latest report about ``deployment_id``."""
    with plane.lock:
        reports = list(plane.status_reports)
    return {device: body for device, body in reports if body["deployment_id"] == deployment_id}


def settled(plane: StandInControlPlane, order: dict[str, Any]) -> Callable[[], bool]:
    def check() -> bool:
        last = last_reports(plane, order["deployment_id"])
        return len(last) == AGENTS and all(
            body["state"] in ("active", "failed") for body in last.values()
        )

    return check


def device_ids(state_dir: Path) -> list[str]:
    return [
        json.loads((state_dir / f"sim-{index}.json").read_text())["device_id"]
        for index in range(AGENTS)
    ]


def test_every_simulated_agent_downloads_verifies_and_reports(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    stats = simulate(control_plane, tmp_path, settled(control_plane, order))
    last = last_reports(control_plane, order["deployment_id"])
    assert {body["state"] for body in last.values()} == {"active"}
    assert all(body["active"] == {"sha256": sha(MODEL_A), "version": 1} for body in last.values())
    # every agent fetched every byte itself, but the process kept one copy
    requests = [r for r in control_plane.artifact_requests if r[0] == sha(MODEL_A)]
    assert len(requests) == AGENTS
    assert stats.downloaded_bytes == AGENTS * len(MODEL_A)
    assert [p.name for p in (tmp_path / "sim-models").glob("*.onnx")] == [f"{sha(MODEL_A)}.onnx"]
    assert list((tmp_path / "sim-models" / "partial").iterdir()) == []
    for device in device_ids(tmp_path):
        states = [b["state"] for b in control_plane.reports(device)]
        assert states[0] == "downloading" and states[-2:] == ["verifying", "active"]
    pinned = json.loads((tmp_path / "sim-0.json").read_text())["signing"]
    assert pinned == control_plane.signing_info()
    assert stats.model_reports["active"] == AGENTS


def test_a_restarted_simulation_confirms_what_its_agents_hold(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    simulate(control_plane, tmp_path, settled(control_plane, order))
    requests, reports = len(control_plane.artifact_requests), len(control_plane.reports())

    def confirmed_again() -> bool:
        return len(control_plane.reports()) >= reports + AGENTS

    simulate(control_plane, tmp_path, confirmed_again)
    again = control_plane.reports()[reports:]
    assert {(body["state"], body["active"]["sha256"]) for body in again} == {
        ("active", sha(MODEL_A))
    }
    assert len(control_plane.artifact_requests) == requests  # nothing downloaded again


def test_a_cut_download_resumes_from_the_agents_own_count(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    control_plane.cut_artifacts_after = [50, 60]
    simulate(control_plane, tmp_path, settled(control_plane, order))
    last = last_reports(control_plane, order["deployment_id"])
    assert {body["state"] for body in last.values()} == {"active"}
    ranges = {r for _, r in control_plane.artifact_requests if r}
    assert ranges and ranges <= {"bytes=50-", "bytes=60-"}


def test_faulty_agents_fail_their_health_checks_and_keep_what_they_had(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    first = control_plane.publish(None)  # run nothing: no health check to fail
    simulate(control_plane, tmp_path, settled(control_plane, first), faulty=frozenset({0, 2}))
    order = control_plane.publish(MODEL_A, io_for())
    simulate(control_plane, tmp_path, settled(control_plane, order), faulty=frozenset({0, 2}))
    last = last_reports(control_plane, order["deployment_id"])
    ids = device_ids(tmp_path)
    for index, device in enumerate(ids):
        body = last[device]
        if index in (0, 2):
            assert (body["state"], body["reason"]) == ("failed", "health_check_failed")
            assert body["detail"] == "injected fault (--faulty)"
            assert body["active"] is None
        else:
            assert body["state"] == "active"


def test_tampered_bytes_fail_every_agent_and_leave_no_copy(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    control_plane.add_artifact(bytes(reversed(MODEL_A)), sha(MODEL_A))
    simulate(control_plane, tmp_path, settled(control_plane, order))
    last = last_reports(control_plane, order["deployment_id"])
    assert {body["reason"] for body in last.values()} == {"hash_mismatch"}
    assert list((tmp_path / "sim-models").glob("*.onnx")) == []


def test_a_rollback_to_the_previous_model_needs_no_download(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    orders = [control_plane.publish(data, io_for()) for data in (MODEL_A, MODEL_B, MODEL_A)]
    control_plane.order(orders[0])
    step = 0
    requests_before_rollback = 0

    def next_order_when_settled() -> bool:
        """A, then B, then A again (version 3), each once the fleet settled on the last."""
        nonlocal step, requests_before_rollback
        if step < 2 and settled(control_plane, orders[step])():
            step += 1
            requests_before_rollback = len(control_plane.artifact_requests)
            control_plane.order(orders[step])
        return step == 2 and settled(control_plane, orders[2])()

    simulate(control_plane, tmp_path, next_order_when_settled)
    last = last_reports(control_plane, orders[2]["deployment_id"])
    assert all(body["active"] == {"sha256": sha(MODEL_A), "version": 3} for body in last.values())
    assert len(control_plane.artifact_requests) == requests_before_rollback == 2 * AGENTS


def test_simulated_agents_answer_profiling_orders(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    order = control_plane.publish_profile(MODEL_B, io_for(), runs=3)

    def all_measured() -> bool:
        with control_plane.lock:
            return len(control_plane.profile_results) == AGENTS

    simulate(control_plane, tmp_path, all_measured)
    results = [body for _, body in control_plane.profile_results]
    assert {(r["run_id"], r["state"]) for r in results} == {(order["run_id"], "measured")}
    assert all(0 < r["p50_ms"] <= r["p95_ms"] for r in results)
    assert {r["runs"] for r in results} == {3}  # the runs asked for, not a default
    assert len([r for r in control_plane.artifact_requests if r[0] == sha(MODEL_B)]) == AGENTS
    assert control_plane.reports() == []  # nothing was installed


def test_a_profiling_order_for_more_runs_is_timed_again(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    """One process shares a measurement per sha256 and run count, never across counts."""
    orders = [control_plane.publish_profile(MODEL_B, io_for(), runs=2)]

    def measured(run_id: str) -> int:
        with control_plane.lock:
            return sum(body["run_id"] == run_id for _, body in control_plane.profile_results)

    def second_order_when_the_first_is_measured() -> bool:
        if len(orders) == 1 and measured(orders[0]["run_id"]) == AGENTS:
            orders.append(control_plane.publish_profile(MODEL_B, io_for(), runs=9))
        return len(orders) == 2 and measured(orders[1]["run_id"]) == AGENTS

    simulate(control_plane, tmp_path, second_order_when_the_first_is_measured)
    runs = {(body["run_id"], body["runs"]) for _, body in control_plane.profile_results}
    assert runs == {(orders[0]["run_id"], 2), (orders[1]["run_id"], 9)}


@pytest.mark.parametrize(
    ("faulty", "message"),
    [("x", "argument --faulty"), ("-1", "argument --faulty"), ("0,9", "no agent 9")],
)
def test_bad_faulty_indexes_name_the_flag(
    capsys: pytest.CaptureFixture[str], faulty: str, message: str
) -> None:
    argv = ["simulate", "--server", "http://127.0.0.1:1", "--token", "t", "--mix", "end:3"]
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--faulty", faulty])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
