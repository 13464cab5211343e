"""A channel layer kept in a SQLite file, for the embedded single-machine setup.

Channels' in-memory layer lives inside one process, so an event sent by a Celery worker or
by a beat-driven sweeper would never reach a browser connected to the ASGI server. This
layer stores messages in a SQLite file that every process on the machine opens; each
process runs one poller that moves messages for the channels it is receiving on into
local queues. It is meant for demos and laptops: with `REDIS_URL` set the product uses
channels-redis instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
from channels.layers import BaseChannelLayer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS message_channel ON message (channel, id);
CREATE TABLE IF NOT EXISTS group_member (
    group_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (group_name, channel)
);
"""


class SQLiteChannelLayer(BaseChannelLayer):
    """Channel layer backed by a SQLite file shared by all local processes."""

    extensions = ["groups", "flush"]
    poll_interval_s = 0.05

    def __init__(
        self,
        path: str,
        expiry: int = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: dict[str, int] | None = None,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        self.path = Path(path)
        self.group_expiry = group_expiry
        self._local = threading.local()
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._client_prefix = secrets.token_hex(6)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as conn:
            conn.executescript(_SCHEMA)

    # --- SQLite access, always from a worker thread ----------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _insert(self, rows: list[tuple[str, bytes, float]]) -> None:
        if rows:
            self._conn().executemany(
                "INSERT INTO message (channel, payload, expires) VALUES (?, ?, ?)", rows
            )

    def _members(self, group: str) -> list[str]:
        cursor = self._conn().execute(
            "SELECT channel FROM group_member WHERE group_name = ? AND expires > ?",
            (group, time.time()),
        )
        return [row[0] for row in cursor]

    def _take(self, channels: list[str]) -> list[tuple[str, bytes]]:
        conn = self._conn()
        marks = ",".join("?" * len(channels))
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                f"SELECT id, channel, payload FROM message WHERE channel IN ({marks}) "
                "AND expires > ? ORDER BY id",
                (*channels, time.time()),
            ).fetchall()
            if rows:
                conn.executemany("DELETE FROM message WHERE id = ?", [(r[0],) for r in rows])
            conn.execute("DELETE FROM message WHERE expires <= ?", (time.time(),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [(channel, payload) for _, channel, payload in rows]

    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        self._conn().execute(sql, params)

    # --- channel layer API ------------------------------------------------------------
    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        row = (channel, msgpack.packb(message), time.time() + self.expiry)
        await asyncio.to_thread(self._insert, [row])

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        queue = self._queues.setdefault(channel, asyncio.Queue())
        self._ensure_poller()
        try:
            return await queue.get()
        except asyncio.CancelledError:
            # The consumer went away: stop polling for its channel.
            if queue.empty():
                self._queues.pop(channel, None)
            raise

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.sqlite!{self._client_prefix}{secrets.token_hex(8)}"

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await asyncio.to_thread(
            self._run,
            "INSERT OR REPLACE INTO group_member (group_name, channel, expires) VALUES (?, ?, ?)",
            (group, channel, time.time() + self.group_expiry),
        )

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await asyncio.to_thread(
            self._run,
            "DELETE FROM group_member WHERE group_name = ? AND channel = ?",
            (group, channel),
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        await asyncio.to_thread(self._group_send, group, message)

    def _group_send(self, group: str, message: dict[str, Any]) -> None:
        payload = msgpack.packb(message)
        expires = time.time() + self.expiry
        self._insert([(channel, payload, expires) for channel in self._members(group)])

    async def flush(self) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM message", ())
        await asyncio.to_thread(self._run, "DELETE FROM group_member", ())
        self._queues.clear()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()

    # --- the poller -------------------------------------------------------------------
    def _ensure_poller(self) -> None:
        loop = asyncio.get_running_loop()
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll())

    async def _poll(self) -> None:
        while self._queues:
            taken = await asyncio.to_thread(self._take, list(self._queues))
            for channel, payload in taken:
                queue = self._queues.get(channel)
                if queue is not None:
                    queue.put_nowait(msgpack.unpackb(payload))
            if not taken:
                await asyncio.sleep(self.poll_interval_s)
