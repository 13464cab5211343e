"""``simulate``: many simulated agents in one process, for load tests and demos.

Simulated agents follow model orders as real ones do (see ``edge_agent.simrollout`` for
what they share to fit a hundred on one machine), so a rollout can be load-tested. Like
real agents they hold the ``/ws/agents/`` nudge WebSocket (``edge_agent.nudge``), one
asyncio connection each, opened just before their first heartbeat (so a fleet's
connections spread over the interval as its heartbeats do): a nudge wakes the agent's
heartbeat loop at once, so a new order reaches the fleet in about a round trip rather
than a heartbeat interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from edge_agent.backoff import Backoff, jittered
from edge_agent.client import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    AsyncAgentClient,
    CredentialRejected,
    Rejected,
    RetryableError,
    TooLarge,
    enroll_body,
)
from edge_agent.fleet_model import TIERS, SimulatedDevice, draw_device
from edge_agent.hardware import HardwareProfile
from edge_agent.manifest import TrustStore
from edge_agent.nudge import AsyncNudgeChannel
from edge_agent.simrollout import SharedArtifacts, SimulatedModels
from edge_agent.spool import DROPPED_METRIC
from edge_agent.state import AgentState, StateError, read_json, write_private_json

log = logging.getLogger(__name__)

MAX_PENDING_SAMPLES = 500  # the protocol's default batch limit
RESERVED_FDS = 64  # descriptors kept for state and model files, the event loop, stdio


@dataclass
class SimConfig:
    server: str
    token: str
    mix: dict[str, int]
    state_dir: Path
    interval_s: float | None = None  # None: follow the server's heartbeat_interval_s
    duration_s: float | None = None
    seed: int = 0
    status_every_s: float = 10.0
    max_connections: int = 100
    faulty: frozenset[int] = frozenset()  # agent indexes whose health checks always fail
    nudge_backoff_base_s: float = 1.0  # reconnection delays of the nudge WebSocket
    nudge_backoff_cap_s: float = 300.0

    @property
    def max_downloads(self) -> int:
        # Half the pool at most: heartbeats must still find a connection during a rollout.
        return max(1, self.max_connections // 2)


@dataclass
class SimStats:
    total: int
    active: int = 0  # agents holding a credential right now
    enrolled: int = 0  # enrollments made, re-enrollments after a 401 included
    reused: int = 0  # agents that started from a stored credential
    heartbeats: int = 0
    samples: int = 0
    errors: int = 0
    stopped_agents: int = 0
    fatal_reasons: list[str] = field(default_factory=list)
    model_reports: dict[str, int] = field(default_factory=dict)  # reports sent, by state
    downloaded_bytes: int = 0
    nudge_channels: int = 0  # nudge WebSockets open right now (counted at each status line)
    nudges: int = 0  # times a nudge woke an agent (catch-ups after a reconnection included)

    def line(self) -> str:
        line = (
            f"simulate: {self.active}/{self.total} agents enrolled "
            f"({self.enrolled} enrollments, {self.reused} reused), {self.heartbeats} heartbeats "
            f"({self.samples} samples), {self.errors} errors, {self.stopped_agents} stopped; "
            f"{self.nudge_channels} nudge channels open, {self.nudges} nudges"
        )
        if self.model_reports:
            states = ", ".join(f"{n} {state}" for state, n in sorted(self.model_reports.items()))
            line += f"; model reports: {states}; {self.downloaded_bytes} bytes downloaded"
        return line


def tiers_from_mix(mix: dict[str, int]) -> list[str]:
    """Tier of each agent index, in a stable order so restarts map index -> same tier."""
    return [tier for tier in TIERS for _ in range(mix.get(tier, 0))]


class SimulatedAgent:
    """Enrolls once (or reuses its stored credential), then heartbeats on its own phase."""

    def __init__(
        self,
        device: SimulatedDevice,
        config: SimConfig,
        http: httpx.AsyncClient,
        shared: SharedArtifacts,
        stats: SimStats,
        nudge: bool = True,
        requests: asyncio.Semaphore | None = None,
    ) -> None:
        self._device = device
        self._config = config
        self._client = AsyncAgentClient(http, requests)
        self._stats = stats
        self.models = SimulatedModels(
            device.index,
            shared,
            http,
            credential=lambda: self._state.credential if self._state else "",
            trust=TrustStore(),
            report=self._report_model,
            report_profile=self._report_profile,
            faulty=device.index in config.faulty,
            on_trust_change=self._pin_rotated_key,
            holdings_path=config.state_dir / f"sim-{device.index}-models.json",
        )
        # (endpoint, deployment or run id) -> the latest unsent report
        self._unsent_reports: dict[tuple[str, str], dict[str, Any]] = {}
        self._reporting = asyncio.Lock()
        self._rng = random.Random(f"triad-sim-timing:{config.seed}:{device.index}")
        self._backoff = Backoff(self._rng)
        self._state_path = config.state_dir / f"sim-{device.index}.json"
        self._state: AgentState | None = None
        self._pending: deque[dict[str, Any]] = deque()
        self._dropped = 0
        self._nudge = nudge
        self._nudge_task: asyncio.Task[None] | None = None
        self.nudge_channel: AsyncNudgeChannel | None = None
        self._wake = asyncio.Event()  # set by a nudge: heartbeat now

    async def run(self) -> None:
        try:
            await self._enroll_or_reuse()
        except _AgentStopped as exc:
            self._stop(str(exc))
            return
        self._stats.active += 1
        try:
            await self._heartbeat_forever()
        except _AgentStopped as exc:
            self._stats.active -= 1
            self._stop(str(exc))
        finally:
            await self._close_nudge_channel()

    def nudged(self) -> None:
        """The server has news for this device: end the wait for the next heartbeat now."""
        self._stats.nudges += 1
        self._wake.set()

    def _open_nudge_channel(self) -> None:
        if not self._nudge or self._nudge_task is not None:
            return
        self.nudge_channel = AsyncNudgeChannel(
            self._config.server,
            lambda: self._state.credential if self._state else "",
            self.nudged,
            random.Random(f"triad-sim-nudge:{self._config.seed}:{self._device.index}"),
            self._config.nudge_backoff_base_s,
            self._config.nudge_backoff_cap_s,
        )
        self._nudge_task = asyncio.create_task(self.nudge_channel.run())

    async def _close_nudge_channel(self) -> None:
        """Cancel the channel: its connection closes with a close handshake."""
        task, self._nudge_task = self._nudge_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _stop(self, reason: str) -> None:
        self._stats.stopped_agents += 1
        self._stats.fatal_reasons.append(reason)
        log.warning("agent %d stopped: %s", self._device.index, reason)

    async def _enroll_or_reuse(self) -> None:
        stored = self._load_stored()
        if stored is None:
            await self._enroll()
            return
        self._state = stored
        self.models.trust = stored.trust_store()
        # The server knows the stored hardware; keep reporting against it.
        self._device.hardware = HardwareProfile(**stored.hardware)
        self._stats.reused += 1

    def _load_stored(self) -> AgentState | None:
        try:
            state = AgentState.from_json(read_json(self._state_path))
            HardwareProfile(**state.hardware)
        except (StateError, TypeError):
            return None
        # A different server or tier (the mix changed) is a different device.
        if state.server != self._config.server or state.tier != self._device.tier:
            return None
        return state

    async def _enroll(self) -> None:
        device = self._device
        body = enroll_body(
            token=self._config.token,
            name=device.name,
            tier=device.tier,
            hardware=device.hardware.to_json(),
            labels={"simulated": "true"},
            location=f"simulated site {device.index % 16}",
        )
        while True:
            try:
                result = await self._client.enroll(body)
                break
            except RetryableError as exc:
                self._stats.errors += 1
                await asyncio.sleep(self._backoff.next_delay(exc.retry_after_s))
            except (Rejected, CredentialRejected, TooLarge) as exc:
                self._stats.errors += 1
                raise _AgentStopped(f"enrollment refused: {exc}") from exc
        self._backoff.reset()
        self._state = AgentState(
            server=self._config.server,
            device_id=result.device_id,
            credential=result.credential,
            heartbeat_interval_s=result.heartbeat_interval_s,
            hardware=device.hardware.to_json(),
            tier=device.tier,
            signing=result.signing,
        )
        self.models.trust = self._state.trust_store()
        await self.models.forget()  # a new device holds no model
        await asyncio.to_thread(write_private_json, self._state_path, self._state.to_json())
        self._stats.enrolled += 1

    async def _pin_rotated_key(self, trust: TrustStore) -> None:
        assert self._state is not None
        self._state = replace(self._state, signing=trust.to_signing_json())
        await asyncio.to_thread(write_private_json, self._state_path, self._state.to_json())

    async def _report_model(self, body: dict[str, Any]) -> None:
        """Queue a model-status report in place of any unsent one, and try to send now."""
        reports = self._stats.model_reports
        reports[body["state"]] = reports.get(body["state"], 0) + 1
        await self._queue_report(("model", body["deployment_id"]), body)

    async def _report_profile(self, body: dict[str, Any]) -> None:
        await self._queue_report(("profile", body["run_id"]), body)

    async def _queue_report(self, key: tuple[str, str], body: dict[str, Any]) -> None:
        self._unsent_reports.pop(key, None)
        self._unsent_reports[key] = body
        await self._send_reports()

    async def _send_reports(self) -> None:
        async with self._reporting:
            while self._unsent_reports and self._state is not None:
                key, body = next(iter(self._unsent_reports.items()))
                send = (
                    self._client.report_model_status
                    if key[0] == "model"
                    else self._client.report_profile_result
                )
                try:
                    await send(self._state.credential, body)
                except RetryableError:
                    return  # the next successful heartbeat sends it again
                except (Rejected, TooLarge, CredentialRejected) as exc:
                    log.error("agent %d: report dropped: %s", self._device.index, exc)
                if self._unsent_reports.get(key) is body:
                    del self._unsent_reports[key]

    def _interval(self) -> float:
        assert self._state is not None
        return self._config.interval_s or self._state.heartbeat_interval_s

    async def _heartbeat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        # A random phase spreads the fleet's heartbeats, and nudge connections, over the
        # interval.
        await asyncio.sleep(self._rng.uniform(0.0, self._interval()))
        self._open_nudge_channel()
        last_t = loop.time()
        retry_at = 0.0
        while True:
            now = loop.time()
            if self._wake.is_set():
                # Cleared before the request: a nudge during it means another heartbeat.
                self._wake.clear()
                retry_at = now  # the server just spoke: no need to wait out a backoff
            self._queue(self._device.sample(datetime.now(UTC), now - last_t))
            last_t = now
            if now >= retry_at:
                retry_at = await self._send_pending(now)
            await self._sleep(jittered(self._interval(), self._rng))

    async def _sleep(self, delay_s: float) -> None:
        """Sleep ``delay_s``, or less if a nudge comes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._wake.wait()

    def _queue(self, sample: dict[str, Any]) -> None:
        if len(self._pending) >= MAX_PENDING_SAMPLES:
            self._pending.popleft()
            self._dropped += 1
        if self._dropped:
            sample["metrics"] = {**sample["metrics"], DROPPED_METRIC: self._dropped}
            self._dropped = 0
        self._pending.append(sample)

    async def _send_pending(self, now: float) -> float:
        """Send the queued samples; returns the earliest time to try again."""
        assert self._state is not None
        batch = list(self._pending)
        try:
            result = await self._client.heartbeat(
                self._state.credential, batch, self._device.links()
            )
        except RetryableError as exc:
            self._stats.errors += 1
            return now + self._backoff.next_delay(exc.retry_after_s)
        except (Rejected, TooLarge) as exc:
            self._stats.errors += 1
            log.error("agent %d: batch dropped: %s", self._device.index, exc)
            self._pending.clear()
            return now
        except CredentialRejected as exc:
            self._stats.errors += 1
            await self._recover_credential(exc)
            return now
        self._pending.clear()
        self._backoff.reset()
        self._stats.heartbeats += 1
        self._stats.samples += len(batch)
        if result.heartbeat_interval_s and self._config.interval_s is None:
            self._state = replace(self._state, heartbeat_interval_s=result.heartbeat_interval_s)
        self.models.offer(result.model)
        self.models.offer_profile(result.profile)
        if self._unsent_reports:
            await self._send_reports()
        return now

    async def _recover_credential(self, exc: CredentialRejected) -> None:
        # 401: the stored credential is stale (e.g. the database was reset): enroll anew.
        # 403: the device was retired on purpose; coming back as a new one would defeat that.
        if exc.status != 401:
            raise _AgentStopped(f"heartbeat refused: {exc}")
        log.warning("agent %d: credential rejected, enrolling again", self._device.index)
        await self._enroll()
        if self._nudge_task is not None:  # reconnect as the new device
            await self._close_nudge_channel()
            self._open_nudge_channel()


class _AgentStopped(Exception):
    """This simulated agent cannot go on (retired device, refused enrollment)."""


async def _report_status(
    stats: SimStats,
    every_s: float,
    report: Callable[[str], None],
    agents: list[SimulatedAgent],
) -> None:
    while True:
        await asyncio.sleep(every_s)
        _count(stats, agents)
        report(stats.line())


def _count(stats: SimStats, agents: list[SimulatedAgent]) -> None:
    stats.downloaded_bytes = sum(agent.models.downloaded_bytes for agent in agents)
    stats.nudge_channels = sum(
        agent.nudge_channel is not None and agent.nudge_channel.open for agent in agents
    )


async def run_simulation(
    config: SimConfig,
    stop: asyncio.Event | None = None,
    report: Callable[[str], None] = print,
) -> SimStats:
    """Run the simulated fleet until ``stop`` is set, ``duration_s`` passes, or all agents stop."""
    stop = stop or asyncio.Event()
    tiers = tiers_from_mix(config.mix)
    stats = SimStats(total=len(tiers))
    pool = max(1, min(config.max_connections, len(tiers)))
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    shared = SharedArtifacts(config.state_dir / "sim-models", config.max_downloads)
    nudge_channels = nudge_channel_budget(len(tiers), pool)
    # Requests other than downloads (which have their own semaphore) wait here, not in
    # httpx's pool: see AsyncAgentClient.
    requests = asyncio.Semaphore(pool)
    async with httpx.AsyncClient(
        base_url=config.server,
        limits=limits,
        timeout=DEFAULT_TIMEOUT,
        headers={"User-Agent": USER_AGENT},
    ) as http:
        agents = [
            SimulatedAgent(
                draw_device(index, tier, config.seed),
                config,
                http,
                shared,
                stats,
                nudge=index < nudge_channels,
                requests=requests,
            )
            for index, tier in enumerate(tiers)
        ]
        tasks = [asyncio.create_task(agent.run()) for agent in agents]
        reporter = asyncio.create_task(_report_status(stats, config.status_every_s, report, agents))
        await _wait_for_end(tasks, stop, config.duration_s)
        _count(stats, agents)  # the channels open at the end, before they close
        for task in [*tasks, reporter]:
            task.cancel()
        results = await asyncio.gather(*tasks, reporter, return_exceptions=True)
        await asyncio.gather(*(agent.models.close() for agent in agents))
        stats.downloaded_bytes = sum(agent.models.downloaded_bytes for agent in agents)
    for result in results:
        if isinstance(result, Exception):
            log.error("a simulated agent crashed: %r", result)
    report(stats.line())
    return stats


def nudge_channel_budget(agents: int, http_pool: int) -> int:
    """How many agents may hold a nudge socket, raising the soft descriptor limit if need be.

    Each agent's nudge WebSocket is a descriptor, on top of the HTTP pool and the files.
    A common soft limit of 1024 would not fit a thousand agents, so it is raised towards
    the hard limit; where even that is too low, the agents beyond the budget go without
    the nudge (and learn of orders at their heartbeats) rather than starve the
    heartbeats and state files of descriptors.
    """
    try:
        import resource
    except ImportError:  # not a Unix: no limit to read
        return agents
    needed = agents + http_pool + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return agents
    if soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the descriptor limit to %d: %s", wanted, exc)
    budget = max(0, min(agents, soft - http_pool - RESERVED_FDS))
    if budget < agents:
        log.warning(
            "a limit of %d open files leaves nudge channels for %d of %d agents; "
            "the others learn of orders at their heartbeats",
            soft,
            budget,
            agents,
        )
    return budget


async def _wait_for_end(
    tasks: list[asyncio.Task[None]], stop: asyncio.Event, duration_s: float | None
) -> None:
    stopper = asyncio.create_task(stop.wait())
    all_done = asyncio.gather(*tasks, return_exceptions=True)
    waiters: set[asyncio.Future[Any]] = {stopper, all_done}
    try:
        await asyncio.wait(waiters, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
