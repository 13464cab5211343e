"""Simulated agents hold the nudge WebSocket: a nudge, not the interval, brings an order.

Each test makes the agents' heartbeat interval an hour once their channels are open, so
anything they do afterwards can only have come from a nudge (or a reconnection's
catch-up), not from a timer: the tests assert what happened, never how fast.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.simulate import SimConfig, SimStats, nudge_channel_budget, run_simulation

from .standin import StandInControlPlane, wait_until

AGENTS = 2
HOUR_S = 3600.0


def config(plane: StandInControlPlane, state_dir: Path) -> SimConfig:
    return SimConfig(
        server=plane.url,
        token="tet_good",
        mix={"end": AGENTS},
        state_dir=state_dir,
        interval_s=None,  # follow the server's heartbeat_interval_s, which the tests change
        duration_s=30.0,  # a safety net only
        seed=5,
        status_every_s=0.2,
        nudge_backoff_base_s=0.02,
        nudge_backoff_cap_s=0.05,
    )


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


def simulate(
    plane: StandInControlPlane,
    state_dir: Path,
    scenario: Callable[[], Awaitable[None]],
    lines: list[str] | None = None,
) -> SimStats:
    """Run the simulation while ``scenario`` runs; stop it when the scenario ends."""
    report = lines.append if lines is not None else lambda line: None

    async def run() -> SimStats:
        stop = asyncio.Event()
        simulation = asyncio.create_task(
            run_simulation(config(plane, state_dir), stop, report=report)
        )
        try:
            await scenario()
        finally:
            stop.set()
        return await simulation

    return asyncio.run(run())


def heartbeats_by_device(plane: StandInControlPlane) -> Counter[str]:
    with plane.lock:
        return Counter(device for device, _ in plane.heartbeats)


async def slow_down_to_an_hour(plane: StandInControlPlane) -> None:
    """Once every agent's channel is open, make the agents' next heartbeat an hour away.

    Each agent's first heartbeat stored after the change was answered with the hour, and
    it sleeps that long afterwards: from then on only a nudge makes it heartbeat.
    """
    await until(lambda: len(plane.websocket_devices()) == AGENTS)
    before = heartbeats_by_device(plane)
    plane.heartbeat_interval_s = HOUR_S
    await until(
        lambda: all(heartbeats_by_device(plane)[d] > before[d] for d in plane.websocket_devices())
    )


def reports_for(plane: StandInControlPlane, order: dict[str, Any]) -> dict[str, str]:
    """Each device's latest state for ``order``."""
    with plane.lock:
        reports = list(plane.status_reports)
    return {
        device: body["state"]
        for device, body in reports
        if body["deployment_id"] == order["deployment_id"]
    }


def all_active(plane: StandInControlPlane, order: dict[str, Any]) -> Callable[[], bool]:
    def check() -> bool:
        states = reports_for(plane, order)
        return len(states) == AGENTS and set(states.values()) == {"active"}

    return check


@pytest.fixture
def plane(control_plane: StandInControlPlane) -> StandInControlPlane:
    control_plane.heartbeat_interval_s = 0.05  # agents start soon and connect at once
    return control_plane


def test_a_nudge_brings_an_order_an_hour_before_the_next_heartbeat(
    plane: StandInControlPlane, tmp_path: Path
) -> None:
    order: dict[str, Any] = {}

    async def scenario() -> None:
        await slow_down_to_an_hour(plane)
        quiet = len(plane.heartbeats)
        order.update(plane.publish(None))  # "run no model": nothing to download or check
        await asyncio.sleep(0.2)  # a chance to misbehave; nothing may come before the nudge
        assert len(plane.heartbeats) == quiet and reports_for(plane, order) == {}
        assert plane.nudge() == AGENTS
        await until(all_active(plane, order))

    lines: list[str] = []
    stats = simulate(plane, tmp_path, scenario, lines)
    assert stats.nudges >= AGENTS and stats.errors == 0
    assert f"{AGENTS} nudge channels open" in lines[-1]
    # Stopping closed every channel with a close handshake the server saw.
    wait_until(lambda: plane.websocket_devices() == [], timeout_s=5.0)


def test_a_nudge_for_one_device_wakes_that_agent_only(
    plane: StandInControlPlane, tmp_path: Path
) -> None:
    async def scenario() -> None:
        await slow_down_to_an_hour(plane)
        target, other = plane.websocket_devices()
        before = heartbeats_by_device(plane)
        assert plane.nudge(target) == 1
        await until(lambda: heartbeats_by_device(plane)[target] > before[target])
        assert heartbeats_by_device(plane)[other] == before[other]

    simulate(plane, tmp_path, scenario)


def test_a_dropped_channel_reconnects_catches_up_and_is_nudged_again(
    plane: StandInControlPlane, tmp_path: Path
) -> None:
    async def scenario() -> None:
        await slow_down_to_an_hour(plane)
        before = heartbeats_by_device(plane)
        attempts = plane.websocket_attempts
        plane.drop_websockets()  # as a restarting server would
        await until(lambda: plane.websocket_attempts >= attempts + AGENTS)
        await until(lambda: len(plane.websocket_devices()) == AGENTS)
        # The catch-up heartbeat: a nudge may have been sent while the channel was down.
        await until(lambda: all(heartbeats_by_device(plane)[d] > before[d] for d in before))
        order = plane.publish(None)
        plane.nudge()
        await until(all_active(plane, order))

    simulate(plane, tmp_path, scenario)


def test_a_server_without_the_websocket_leaves_heartbeats_and_orders_alone(
    plane: StandInControlPlane, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plane.websockets_enabled = False  # 404, as a server without the endpoint
    caplog.set_level(logging.DEBUG, logger="edge_agent")

    async def scenario() -> None:
        await until(lambda: plane.websocket_attempts >= 2 * AGENTS)  # tried, refused, retried
        order = plane.publish(None)
        await until(all_active(plane, order))  # brought by heartbeats alone
        plane.websockets_enabled = True  # the endpoint appears: the agents find it
        await until(lambda: len(plane.websocket_devices()) == AGENTS)

    stats = simulate(plane, tmp_path, scenario)
    assert (stats.errors, stats.stopped_agents) == (0, 0)
    nudge_logs = [r for r in caplog.records if r.name == "edge_agent.nudge"]
    assert any("no nudge channel" in r.message for r in nudge_logs)
    assert all(r.levelno == logging.DEBUG for r in nudge_logs)


def test_an_unreachable_websocket_does_not_stop_the_simulation_from_stopping(
    plane: StandInControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every connection attempt fails at the socket, as with a port nobody listens on.
    monkeypatch.setattr("edge_agent.nudge.websocket_url", lambda server: "ws://127.0.0.1:9/")

    async def scenario() -> None:
        await until(lambda: heartbeats_by_device(plane).total() >= 3 * AGENTS)

    stats = simulate(plane, tmp_path, scenario)
    assert (stats.errors, stats.stopped_agents, stats.nudges) == (0, 0, 0)


class FakeLimits:
    """``resource``'s descriptor limit, without touching the test process's own."""

    def __init__(self, soft: int, hard: int, can_raise: bool) -> None:
        self.limits = (soft, hard)
        self.can_raise = can_raise

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if not self.can_raise or limits[0] > self.limits[1]:
            raise ValueError("not allowed")
        self.limits = limits


@pytest.mark.parametrize(
    ("soft", "hard", "can_raise", "budget", "soft_after"),
    [
        (20000, 20000, False, 1000, 20000),  # plenty: nothing changes
        (1024, 4096, True, 1000, 1164),  # a common default, raised: 1000 + 100 + RESERVED_FDS
        (1024, 1024, False, 860, 1024),  # cannot raise: the last agents go without
    ],
)
def test_the_descriptor_limit_is_raised_or_the_nudge_channels_fit_it(
    monkeypatch: pytest.MonkeyPatch,
    soft: int,
    hard: int,
    can_raise: bool,
    budget: int,
    soft_after: int,
) -> None:
    import resource

    fake = FakeLimits(soft, hard, can_raise)
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    assert nudge_channel_budget(1000, 100) == budget
    assert fake.limits == (soft_after, hard)
