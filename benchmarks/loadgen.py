"""A lean open-loop HTTP/1.1 load generator for heartbeats (asyncio + httptools, no Django).

Open loop: every heartbeat has a scheduled send time fixed before the run starts, and its
latency is measured from that scheduled time to the last byte of the answer. When the
server (or a saturated connection pool) falls behind, the wait shows up as latency instead
of silently lowering the offered rate: no coordinated omission.

Connections are kept alive and reused first-in first-out, the way a load balancer keeps an
upstream pool; a new one is opened whenever every open connection is busy, up to a cap.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httptools

HEARTBEAT_PATH = "/api/v1/agents/heartbeat/"


class ConnectionClosed(ConnectionError):
    pass


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionClosed(f"bad response: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionClosed("server closed the connection"))

    # httptools callbacks
    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())
        self.waiter = None

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        self.waiter = None

    async def send(self, request: bytes) -> int:
        """Write one request and wait for its status code (the body is discarded)."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Idle connections are reused oldest first, so load spreads over all of them (and so
    over every server worker that accepted one)."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle: collections.deque[HttpConnection] = collections.deque()
        self.open_count = 0
        self.peak_open = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> HttpConnection:
        while True:
            while self.idle:
                connection = self.idle.popleft()
                if not connection.closed:
                    return connection
                self.open_count -= 1
            if self.open_count < self.max_connections:
                self.open_count += 1
                self.peak_open = max(self.peak_open, self.open_count)
                try:
                    _, connection = await asyncio.get_running_loop().create_connection(
                        HttpConnection, self.host, self.port
                    )
                except BaseException:
                    self.open_count -= 1
                    raise
                return connection
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter

    def release(self, connection: HttpConnection, reusable: bool) -> None:
        if reusable and not connection.closed and connection.keep_alive:
            self.idle.append(connection)
        else:
            connection.close()
            self.open_count -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().close()


@dataclass(frozen=True)
class Agent:
    """What the generator knows of one enrolled device: its request head and its readings."""

    head: bytes  # request line and headers up to (not including) Content-Length
    cpu_percent: float
    memory_percent: float
    power_w: float


def make_agents(credentials: Sequence[str], host: str, port: int, seed: int) -> list[Agent]:
    rng = random.Random(seed)
    agents = []
    for credential in credentials:
        head = (
            f"POST {HEARTBEAT_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {credential}\r\nContent-Type: application/json\r\n"
        ).encode()
        agents.append(
            Agent(
                head=head,
                cpu_percent=round(rng.uniform(5, 95), 1),
                memory_percent=round(rng.uniform(10, 90), 1),
                power_w=round(rng.uniform(2, 60), 2),
            )
        )
    return agents


def heartbeat_request(agent: Agent, sequence: int) -> bytes:
    """One heartbeat carrying one telemetry sample stamped now, as a real agent sends it."""
    ts = datetime.now(UTC).isoformat()
    energy_j = agent.power_w * 10.0 * (sequence + 1)
    body = (
        f'{{"telemetry":[{{"ts":"{ts}","cpu_percent":{agent.cpu_percent:.1f},'
        f'"memory_percent":{agent.memory_percent:.1f},"power_w":{agent.power_w:.2f},'
        f'"energy_j":{energy_j:.1f},"inference_count":{120 + sequence % 7},'
        '"latency_p50_ms":21.0,"latency_p95_ms":35.2,"latency_p99_ms":48.0,'
        '"metrics":{"accuracy":0.97}}]}'
    ).encode()
    return b"%sContent-Length: %d\r\n\r\n%s" % (agent.head, len(body), body)


def periodic_schedule(
    agent_count: int, interval_s: float, horizon_s: float, seed: int
) -> list[tuple[float, int, int]]:
    """(send offset in s, agent index, sequence number), sorted: every agent heartbeats every
    `interval_s` from a random phase, as a fleet of independently started agents does."""
    rng = random.Random(seed)
    schedule = []
    for index in range(agent_count):
        at = rng.uniform(0, interval_s)
        sequence = 0
        while at < horizon_s:
            schedule.append((at, index, sequence))
            at += interval_s
            sequence += 1
    schedule.sort()
    return schedule


@dataclass
class Outcome:
    scheduled: float  # offset from the run's start, s
    lag_s: float  # how late the generator itself started the send
    latency_s: float  # scheduled send time to complete answer
    done_at: float  # offset from the run's start, s
    status: str  # HTTP status code, or "timeout" / "connect" / "closed"


@dataclass
class RunRecord:
    outcomes: list[Outcome] = field(default_factory=list)
    unfinished: int = 0
    peak_connections: int = 0


async def run_open_loop(
    agents: Sequence[Agent],
    schedule: Sequence[tuple[float, int, int]],
    *,
    host: str,
    port: int,
    max_connections: int,
    request_timeout_s: float,
    drain_timeout_s: float,
    start: float | None = None,
) -> RunRecord:
    """Send every scheduled heartbeat at its time; stop `drain_timeout_s` after the last.

    Offsets in `schedule` count from `start` (the loop's clock; default: in 0.2 s)."""
    loop = asyncio.get_running_loop()
    pool = ConnectionPool(host, port, max_connections)
    record = RunRecord()
    in_flight: set[asyncio.Task[None]] = set()
    start = loop.time() + 0.2 if start is None else start

    async def one(scheduled: float, agent: Agent, sequence: int) -> None:
        lag = loop.time() - start - scheduled
        request = heartbeat_request(agent, sequence)
        status: str
        connection: HttpConnection | None = None
        reusable = False
        try:
            async with asyncio.timeout(request_timeout_s):
                connection = await pool.acquire()
                status = str(await connection.send(request))
                reusable = True
        except TimeoutError:
            status = "timeout"
        except ConnectionClosed:
            status = "closed"
        except OSError:
            status = "connect"
        finally:
            if connection is not None:
                pool.release(connection, reusable)
        done = loop.time() - start
        record.outcomes.append(Outcome(scheduled, lag, done - scheduled, done, status))

    for scheduled, index, sequence in schedule:
        delay = start + scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(scheduled, agents[index], sequence))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    if in_flight:
        _, pending = await asyncio.wait(set(in_flight), timeout=drain_timeout_s)
        record.unfinished = len(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    record.peak_connections = pool.peak_open
    pool.close()
    return record


async def run_closed_loop(
    agents: Sequence[Agent], *, host: str, port: int, concurrency: int
) -> dict[str, int]:
    """One heartbeat per agent as fast as `concurrency` connections allow (used to bring the
    whole fleet online before measuring). Returns counts by status."""
    pool = ConnectionPool(host, port, concurrency)
    counts: collections.Counter[str] = collections.Counter()
    queue = collections.deque(agents)

    async def worker() -> None:
        while queue:
            agent = queue.popleft()
            connection = await pool.acquire()
            reusable = False
            try:
                counts[str(await connection.send(heartbeat_request(agent, 0)))] += 1
                reusable = True
            except (ConnectionClosed, OSError):
                counts["closed"] += 1
            finally:
                pool.release(connection, reusable)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    pool.close()
    return dict(counts)
