"""The WebSocket nudge: the server says "heartbeat now" when the device's order changes.

Without it an agent learns of a new order at its next heartbeat, up to a whole interval
later; with it, a rollout reaches a fleet in about one round trip. It is an optimisation
and nothing more: heartbeats carry every order anyway. So a server without the endpoint,
or a connection that fails, is logged quietly (info once, then debug) and retried with
backoff, and never affects the agent otherwise.

Two listeners share the URL, the headers and the message check: ``NudgeListener`` on a
thread for the real agent, ``AsyncNudgeChannel`` as a task for agents that live on an
event loop (the simulator's, a thousand of them in one process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from edge_agent.backoff import Backoff
from edge_agent.client import USER_AGENT, bearer

log = logging.getLogger(__name__)

NUDGE_PATH = "/ws/agents/"
RECV_POLL_S = 0.5  # how often a quiet connection checks whether the agent is stopping
MAX_MESSAGE_BYTES = 64 * 1024  # a nudge is a few bytes
# A refused, failed or lost connection: retried with backoff, never the agent's problem.
CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException)


def websocket_url(server: str) -> str:
    """``http://host:port`` -> ``ws://host:port/ws/agents/`` (https -> wss)."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, NUDGE_PATH, "", ""))


def is_nudge(message: str | bytes) -> bool:
    try:
        body = json.loads(message)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("type") == "nudge"


def connect_options(credential: str, open_timeout_s: float) -> dict[str, Any]:
    """The keyword arguments both clients connect with (sync and asyncio take the same).

    No compression: a nudge is a few bytes, and a deflate context per connection is
    memory a thousand simulated agents would hold for nothing.
    """
    return {
        "additional_headers": bearer(credential),
        "user_agent_header": USER_AGENT,
        "open_timeout": open_timeout_s,
        "close_timeout": 1.0,
        "compression": None,
        "max_size": MAX_MESSAGE_BYTES,
    }


def log_failure(url: str, exc: BaseException, level: int) -> None:
    # Heartbeats carry every order: a missing channel costs latency, not correctness.
    log.log(level, "no nudge channel at %s (%s); heartbeats still bring orders", url, exc)


class NudgeListener:
    """Holds the nudge WebSocket on a thread and calls ``on_nudge`` for every nudge.

    After a lost connection comes back it calls ``on_nudge`` too: a nudge may have been
    sent while it was away.
    """

    def __init__(
        self,
        server: str,
        credential: str,
        on_nudge: Callable[[], None],
        rng: random.Random | None = None,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.url = websocket_url(server)
        self._credential = credential
        self._on_nudge = on_nudge
        self._backoff = Backoff(rng or random.Random(), backoff_base_s, backoff_cap_s)
        self._open_timeout_s = open_timeout_s
        self._stop = threading.Event()
        self._connection: ClientConnection | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0  # successful connections so far
        self.failures = 0  # failed attempts since the last successful connection

    def start(self) -> NudgeListener:
        self._thread = threading.Thread(target=self._run, name="nudge", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None:
            connection.close()  # wakes a pending recv at once
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> NudgeListener:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except CONNECTION_ERRORS as exc:
                self._failed(exc)
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next_delay())

    def _listen(self) -> None:
        options = connect_options(self._credential, self._open_timeout_s)
        with connect(self.url, **options) as connection:
            self._connected(connection)
            try:
                self._receive(connection)
            finally:
                self._connection = None

    def _connected(self, connection: ClientConnection) -> None:
        self._connection = connection
        self.connections += 1
        self.failures = 0
        self._backoff.reset()
        log.info("nudge channel open at %s", self.url)
        if self.connections > 1:
            self._on_nudge()  # catch up on a nudge sent while the channel was down

    def _receive(self, connection: ClientConnection) -> None:
        while not self._stop.is_set():
            try:
                message = connection.recv(timeout=RECV_POLL_S)
            except TimeoutError:
                continue
            except ConnectionClosed:
                if not self._stop.is_set():
                    log.info("nudge channel closed by the server; reconnecting")
                return
            if is_nudge(message):
                log.debug("nudged: heartbeating now")
                self._on_nudge()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        log_failure(self.url, exc, logging.INFO if self.failures == 1 else logging.DEBUG)


class AsyncNudgeChannel:
    """The nudge WebSocket as a task on the running event loop: a socket, no thread.

    ``run`` holds the channel until it is cancelled (which closes the connection with a
    close handshake): it calls ``on_nudge`` for every nudge, and after a lost connection
    comes back, as ``NudgeListener`` does. Failures are logged at debug only, since a
    thousand simulated agents would otherwise log a thousand lines when the server has no
    endpoint. ``credential`` is read at each connection, so a re-enrolled agent
    reconnects with its new one.
    """

    def __init__(
        self,
        server: str,
        credential: Callable[[], str],
        on_nudge: Callable[[], None],
        rng: random.Random | None = None,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.url = websocket_url(server)
        self._credential = credential
        self._on_nudge = on_nudge
        self._backoff = Backoff(rng or random.Random(), backoff_base_s, backoff_cap_s)
        self._open_timeout_s = open_timeout_s
        self.connections = 0  # successful connections so far
        self.failures = 0  # failed attempts since the last successful connection
        self.open = False  # connected right now

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except CONNECTION_ERRORS as exc:
                self.failures += 1
                log_failure(self.url, exc, logging.DEBUG)
            except Exception:  # a bug here must not cost the agent its heartbeats
                self.failures += 1
                log.warning("nudge channel at %s failed; retrying", self.url, exc_info=True)
            await asyncio.sleep(self._backoff.next_delay())

    async def _listen(self) -> None:
        options = connect_options(self._credential(), self._open_timeout_s)
        async with connect_async(self.url, **options) as connection:
            self.connections += 1
            self.failures = 0
            self._backoff.reset()
            self.open = True
            log.debug("nudge channel open at %s", self.url)
            try:
                if self.connections > 1:
                    self._on_nudge()  # catch up on a nudge sent while the channel was down
                async for message in connection:  # ends when the server closes cleanly
                    if is_nudge(message):
                        self._on_nudge()
            except ConnectionClosed:
                pass  # the connection dropped: a lost channel, not a failure to connect
            finally:
                self.open = False
            log.debug("nudge channel at %s closed; reconnecting", self.url)
