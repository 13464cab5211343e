"""A bounded on-disk queue of telemetry samples that survives restarts and outages."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DROPPED_METRIC = "dropped_samples"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    -- samples lost to the bound that this sample reports in metrics.dropped_samples
    drops INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class SpooledSample:
    seq: int
    sample: dict[str, Any]


class Spool:
    """FIFO of samples in SQLite (WAL), bounded to ``max_rows`` by dropping the oldest.

    A sample leaves the spool only by ``ack`` (the server stored it) or ``discard`` (the
    server can never accept it), so a crash at any point loses nothing that was appended.
    Drops are never silent: the sample whose arrival forced them carries their number in
    ``metrics.dropped_samples``, including drops a dropped sample had itself reported,
    so the counts the server receives always add up to the true loss.
    Not safe for concurrent use from several threads; one runner owns it.
    """

    def __init__(self, path: Path, max_rows: int = 100_000) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.max_rows = max_rows
        # Owner-only like the rest of the state dir; SQLite gives its -wal file the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: edge devices lose power, and an appended sample must outlive that.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM samples").fetchone()
        return int(row[0])

    def append(self, sample: dict[str, Any]) -> int:
        """Queue ``sample``; returns how many old samples were dropped to make room."""
        with _transaction(self._db):
            overflow = len(self) + 1 - self.max_rows
            dropped, carried = self._drop_oldest(overflow) if overflow > 0 else (0, 0)
            drops = dropped + carried
            body = dict(sample)
            if drops:
                body["metrics"] = {**(body.get("metrics") or {}), DROPPED_METRIC: drops}
            self._db.execute(
                "INSERT INTO samples (body, drops) VALUES (?, ?)", (json.dumps(body), drops)
            )
            if dropped:
                self._bump("dropped_total", dropped)
        return dropped

    def _drop_oldest(self, count: int) -> tuple[int, int]:
        rows = self._db.execute(
            "SELECT seq, drops FROM samples ORDER BY seq LIMIT ?", (count,)
        ).fetchall()
        self._delete([seq for seq, _ in rows])
        return len(rows), sum(drops for _, drops in rows)

    def peek(self, limit: int) -> list[SpooledSample]:
        """The ``limit`` oldest samples, oldest first; they stay queued until acked."""
        rows = self._db.execute(
            "SELECT seq, body FROM samples ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [SpooledSample(seq, json.loads(body)) for seq, body in rows]

    def ack(self, items: Sequence[SpooledSample]) -> None:
        """Forget samples the server answered 200 for."""
        with _transaction(self._db):
            self._delete([item.seq for item in items])

    def discard(self, items: Sequence[SpooledSample]) -> None:
        """Forget samples the server rejected for good (400); counted, unlike acks."""
        with _transaction(self._db):
            self._delete([item.seq for item in items])
            self._bump("rejected_total", len(items))

    def counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @property
    def dropped_total(self) -> int:
        return self.counter("dropped_total")

    def _delete(self, seqs: list[int]) -> None:
        self._db.executemany("DELETE FROM samples WHERE seq = ?", [(seq,) for seq in seqs])

    def _bump(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
