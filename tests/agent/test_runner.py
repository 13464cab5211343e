"""The run loop against a stand-in control plane: outages, backlogs, rejections, signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import edge_agent
from edge_agent.client import AgentClient, HeartbeatResult, ModelOrder, TooLarge
from edge_agent.runner import AgentRunner, RunnerConfig, RunOutcome, StopToken
from edge_agent.spool import Spool
from edge_agent.state import AgentState, save_agent_state
from edge_agent.telemetry import make_sample, utc_timestamp

from .standin import StandInControlPlane, wait_until

REPO_ROOT = Path(edge_agent.__file__).resolve().parent.parent
FAST = RunnerConfig(
    interval_s=0.05, interval_is_override=True, backoff_base_s=0.05, backoff_cap_s=0.2
)


class CountingSampler:
    """Numbers its samples (metrics.n) so the server side can check order and uniqueness."""

    def __init__(self) -> None:
        self.produced = 0

    def sample(self) -> dict[str, Any]:
        sample = numbered(self.produced)
        self.produced += 1
        return sample


def numbered(n: int, **fields: Any) -> dict[str, Any]:
    sample = make_sample(utc_timestamp(), 10.0, 20.0, 3.0, float(n), metrics={"n": n})
    return {**sample, **fields}


def numbers(samples: list[dict[str, Any]]) -> list[int]:
    return [sample["metrics"]["n"] for sample in samples]


class RunningAgent:
    """An AgentRunner on a thread, so the test can watch the server meanwhile."""

    def __init__(self, runner: AgentRunner, stop: StopToken) -> None:
        self.runner, self.stop = runner, stop
        self.outcome: list[RunOutcome] = []
        self.thread = threading.Thread(target=lambda: self.outcome.append(runner.run()))
        self.thread.start()

    def finish(self) -> RunOutcome:
        self.stop.request()
        self.thread.join(timeout=10.0)
        assert not self.thread.is_alive(), "the runner did not stop"
        return self.outcome[0]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool.sqlite3") as opened:
        yield opened


def start_agent(
    plane: StandInControlPlane,
    spool: Spool,
    sampler: Any,
    config: RunnerConfig = FAST,
    **runner_kwargs: Any,
) -> RunningAgent:
    _, credential = plane.register()
    client = AgentClient(plane.url, credential, timeout=httpx.Timeout(2.0))
    stop = StopToken()
    runner = AgentRunner(client, spool, sampler, config, stop, random.Random(1), **runner_kwargs)
    return RunningAgent(runner, stop)


def test_samples_from_an_outage_arrive_exactly_once_in_order(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    sampler = CountingSampler()
    agent = start_agent(control_plane, spool, sampler)
    wait_until(lambda: len(control_plane.received()) >= 5)

    control_plane.stop()
    stored_before_outage = len(control_plane.received())
    outage_starts_at = sampler.produced
    wait_until(lambda: sampler.produced >= outage_starts_at + 10)
    assert len(control_plane.received()) == stored_before_outage
    control_plane.start()
    produced_in_outage = sampler.produced

    wait_until(lambda: len(control_plane.received()) >= produced_in_outage + 3)
    assert agent.finish() is RunOutcome.STOPPED
    received = numbers(control_plane.received())
    assert received == list(range(len(received)))  # no gap, no duplicate, in order
    queued = numbers([item.sample for item in spool.peek(10_000)])
    assert received + queued == list(range(sampler.produced))


def test_backlog_from_before_a_restart_drains_promptly_in_batches(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    for n in range(1200):
        spool.append(numbered(n))
    sampler = CountingSampler()
    sampler.produced = 1200
    slow = RunnerConfig(interval_s=30.0, interval_is_override=True)
    agent = start_agent(control_plane, spool, sampler, slow)
    wait_until(lambda: len(control_plane.received()) >= 1201)
    agent.finish()
    assert numbers(control_plane.received()) == list(range(1201))
    sizes = [len(body["telemetry"]) for _, body in control_plane.heartbeats]
    assert sizes == [500, 500, 201]


def test_a_rejected_sample_is_dropped_and_the_rest_resent(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    spool.append(numbered(0))
    spool.append(numbered(1, power_w=-1.0))
    spool.append(numbered(2))
    sampler = CountingSampler()
    sampler.produced = 3
    slow = RunnerConfig(interval_s=30.0, interval_is_override=True)
    agent = start_agent(control_plane, spool, sampler, slow)
    wait_until(lambda: len(spool) == 0)
    agent.finish()
    assert numbers(control_plane.received()) == [0, 2, 3]
    assert spool.counter("rejected_total") == 1


def test_a_batch_over_the_servers_item_limit_is_split_not_dropped(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    for n in range(600):
        spool.append(numbered(n))
    config = RunnerConfig(interval_s=30.0, interval_is_override=True, max_batch=600)
    agent = start_agent(control_plane, spool, CountingSampler(), config)
    wait_until(lambda: len(spool) <= 1)
    agent.finish()
    assert numbers(control_plane.received())[:600] == list(range(600))


class TooLargeAbove:
    """Fake sender whose server refuses bodies of more than ``limit`` samples with 413."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.batches: list[list[dict[str, Any]]] = []

    def heartbeat(
        self, telemetry: list[dict[str, Any]], links: list[dict[str, Any]] | None = None
    ) -> HeartbeatResult:
        if len(telemetry) > self.limit:
            raise TooLarge("413")
        self.batches.append(telemetry)
        return HeartbeatResult(len(telemetry), None, None)


def test_413_halves_the_batch_until_it_fits(spool: Spool) -> None:
    for n in range(300):
        spool.append(numbered(n))
    sender = TooLargeAbove(limit=80)
    stop = StopToken()
    config = RunnerConfig(interval_s=30.0, interval_is_override=True)
    agent = RunningAgent(
        AgentRunner(sender, spool, CountingSampler(), config, stop, random.Random(0)), stop
    )
    wait_until(lambda: len(spool) <= 1)
    agent.finish()
    delivered = [sample for batch in sender.batches for sample in batch]
    assert numbers(delivered)[:300] == list(range(300))
    assert max(len(batch) for batch in sender.batches) <= 80


def test_batch_size_grows_back_after_a_413(spool: Spool) -> None:
    for n in range(2000):
        spool.append(numbered(n))
    sender = TooLargeAbove(limit=100)
    stop = StopToken()
    config = RunnerConfig(interval_s=30.0, interval_is_override=True, max_batch=400)
    runner = AgentRunner(sender, spool, CountingSampler(), config, stop, random.Random(0))
    sender_heartbeat = sender.heartbeat

    def heartbeat(telemetry: list[dict[str, Any]], links: Any = None) -> HeartbeatResult:
        if len(sender.batches) >= 3:
            sender.limit = 10_000  # the proxy that capped bodies is gone
        return sender_heartbeat(telemetry, links)

    sender.heartbeat = heartbeat  # type: ignore[method-assign]
    agent = RunningAgent(runner, stop)
    wait_until(lambda: len(spool) <= 1)
    agent.finish()
    sizes = [len(batch) for batch in sender.batches]
    assert max(sizes[:3]) <= 100 and max(sizes) == 400


def test_server_interval_is_followed_unless_overridden(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    control_plane.heartbeat_interval_s = 0.07
    changes: list[float] = []
    followed = start_agent(
        control_plane,
        spool,
        CountingSampler(),
        RunnerConfig(interval_s=30.0),
        on_interval_change=changes.append,
    )
    wait_until(lambda: followed.runner.interval_s == 0.07)
    wait_until(lambda: len(control_plane.received()) >= 3)  # now sampling every 0.07 s
    followed.finish()
    assert changes == [0.07]

    overridden = start_agent(control_plane, spool, CountingSampler(), FAST)
    wait_until(lambda: len(control_plane.received()) >= 6)
    overridden.finish()
    assert overridden.runner.interval_s == FAST.interval_s


def test_a_revoked_credential_stops_the_runner(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    agent = start_agent(control_plane, spool, CountingSampler())
    wait_until(lambda: len(control_plane.received()) >= 1)
    control_plane.revoke_all()
    agent.thread.join(timeout=10.0)
    assert agent.outcome == [RunOutcome.CREDENTIAL_REJECTED]
    assert len(spool) >= 1  # kept: a re-enrolled agent may still send them


def start_agent_process(
    plane: StandInControlPlane, state_dir: Path, interval: str = "0.1"
) -> subprocess.Popen[str]:
    device_id, credential = plane.register()
    save_agent_state(
        state_dir,
        AgentState(
            plane.url,
            device_id,
            credential,
            10.0,
            {"power_idle_w": 2.0, "power_busy_w": 8.0},
            "end",
        ),
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent",
            "run",
            "--state-dir",
            str(state_dir),
            "--interval",
            interval,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# The agent aims at ~2 s; the bound is looser because CI machines can be loaded. A
# request that hangs for 30 s still proves the abort.
STOP_LIMIT_S = 5.0


def stop_within(process: subprocess.Popen[str], signum: int, limit_s: float) -> float:
    started = time.monotonic()
    process.send_signal(signum)
    try:
        process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return time.monotonic() - started


def test_sigterm_exits_0_quickly_and_keeps_the_spool(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    process = start_agent_process(control_plane, tmp_path)
    wait_until(lambda: len(control_plane.received()) >= 2)
    assert stop_within(process, signal.SIGTERM, STOP_LIMIT_S) < STOP_LIMIT_S
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert "stopped;" in stderr
    assert json.loads((tmp_path / "agent.json").read_text())["credential"]


def test_sigint_aborts_a_hanging_request_without_losing_its_samples(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    control_plane.hang_s = 30.0
    process = start_agent_process(control_plane, tmp_path)
    wait_until(lambda: control_plane.heartbeat_requests >= 1)
    time.sleep(0.2)  # well inside the request now
    assert stop_within(process, signal.SIGINT, STOP_LIMIT_S) < STOP_LIMIT_S
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    with Spool(tmp_path / "spool.sqlite3") as spool:
        assert len(spool) >= 1  # never acked, so sent again on the next run


def test_orders_in_heartbeat_answers_are_handed_over(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    order = control_plane.publish(None)
    orders: list[ModelOrder] = []
    agent = start_agent(control_plane, spool, CountingSampler(), on_order=orders.append)
    wait_until(lambda: len(orders) >= 2)
    agent.finish()
    assert orders[0].deployment_id == order["deployment_id"]
    assert orders[0].manifest == order["manifest"]


def test_a_nudge_heartbeats_at_once_instead_of_after_the_interval(
    control_plane: StandInControlPlane, spool: Spool
) -> None:
    slow = RunnerConfig(interval_s=60.0, interval_is_override=True)
    agent = start_agent(control_plane, spool, CountingSampler(), slow)
    wait_until(lambda: len(control_plane.heartbeats) == 1)
    agent.runner.nudge()
    wait_until(lambda: len(control_plane.heartbeats) == 2)
    assert not agent.stop.requested  # woken, not stopped
    assert agent.finish() is RunOutcome.STOPPED
