"""The WebSocket nudge: heartbeat at once when told, and stay quiet when there is none."""

from __future__ import annotations

import logging
import random
import threading

import pytest

from edge_agent.nudge import NudgeListener, is_nudge, websocket_url

from .standin import StandInControlPlane, wait_until


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1


def listener(plane: StandInControlPlane, on_nudge: Counter, credential: str) -> NudgeListener:
    return NudgeListener(
        plane.url, credential, on_nudge, random.Random(0), backoff_base_s=0.02, backoff_cap_s=0.05
    )


def test_the_websocket_url_follows_the_servers_scheme() -> None:
    assert websocket_url("http://cp:8000") == "ws://cp:8000/ws/agents/"
    assert websocket_url("https://cp.example") == "wss://cp.example/ws/agents/"


def test_only_a_nudge_is_a_nudge() -> None:
    assert is_nudge('{"type": "nudge"}')
    assert not is_nudge('{"type": "other"}') and not is_nudge("[]") and not is_nudge("{")


def test_a_nudge_from_the_server_reaches_the_agent(control_plane: StandInControlPlane) -> None:
    device_id, credential = control_plane.register()
    nudged = Counter()
    with listener(control_plane, nudged, credential):
        wait_until(lambda: control_plane.websocket_devices() == [device_id])
        assert control_plane.nudge(device_id) == 1
        wait_until(lambda: nudged.count == 1)
        control_plane.nudge(device_id)
        wait_until(lambda: nudged.count == 2)
    wait_until(lambda: control_plane.websocket_devices() == [])  # closed on the way out


def test_a_lost_channel_reconnects_and_catches_up(control_plane: StandInControlPlane) -> None:
    device_id, credential = control_plane.register()
    nudged = Counter()
    with listener(control_plane, nudged, credential) as running:
        wait_until(lambda: control_plane.websocket_devices() == [device_id])
        control_plane.drop_websockets()
        wait_until(lambda: running.connections == 2)
        wait_until(lambda: nudged.count == 1)  # it may have missed one meanwhile


def test_a_server_without_the_channel_is_retried_quietly(
    control_plane: StandInControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    control_plane.websockets_enabled = False
    _, credential = control_plane.register()
    nudged = Counter()
    caplog.set_level(logging.DEBUG, logger="edge_agent.nudge")
    with listener(control_plane, nudged, credential) as running:
        wait_until(lambda: control_plane.websocket_attempts >= 3)
        control_plane.websockets_enabled = True
        wait_until(lambda: running.connections == 1)
    nudge_logs = [r for r in caplog.records if r.name == "edge_agent.nudge"]
    assert max(r.levelno for r in nudge_logs) <= logging.INFO
    assert (
        sum(r.levelno == logging.INFO and "no nudge channel" in r.message for r in nudge_logs) == 1
    )
    assert nudged.count == 0


def test_an_unreachable_server_does_not_stop_the_listener_from_stopping() -> None:
    nudged = Counter()
    running = NudgeListener(
        "http://127.0.0.1:9", "c", nudged, backoff_base_s=0.01, backoff_cap_s=0.02
    )
    running.start()
    wait_until(lambda: running.failures >= 2)
    running.stop()
    assert nudged.count == 0
