"""The spool: bounded FIFO on disk, ack-after-200 semantics, visible drops, restarts."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from edge_agent.spool import DROPPED_METRIC, Spool


def _sample(n: int) -> dict[str, Any]:
    return {"ts": f"2026-11-27T16:00:{n:02d}.000Z", "metrics": {"n": n}}


def _numbers(spool: Spool) -> list[int]:
    return [item.sample["metrics"]["n"] for item in spool.peek(10_000)]


def test_peek_returns_oldest_first_and_removes_nothing(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        for n in range(5):
            spool.append(_sample(n))
        assert [item.sample["metrics"]["n"] for item in spool.peek(3)] == [0, 1, 2]
        assert len(spool) == 5


def test_ack_removes_exactly_the_acked_samples(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        for n in range(5):
            spool.append(_sample(n))
        batch = spool.peek(2)
        spool.append(_sample(5))  # arrives while the batch is in flight
        spool.ack(batch)
        assert _numbers(spool) == [2, 3, 4, 5]


def test_unacked_samples_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    for n in range(3):
        spool.append(_sample(n))
    spool.peek(3)  # sent, but the process dies before the answer: no ack
    spool.close()
    with Spool(path) as reopened:
        assert _numbers(reopened) == [0, 1, 2]
        reopened.ack(reopened.peek(1))
    with Spool(path) as again:
        assert _numbers(again) == [1, 2]


def test_bound_drops_the_oldest_and_reports_it_in_the_next_sample(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_rows=3) as spool:
        for n in range(3):
            assert spool.append(_sample(n)) == 0
        assert spool.append(_sample(3)) == 1
        assert _numbers(spool) == [1, 2, 3]
        newest = spool.peek(3)[-1].sample
        assert newest["metrics"] == {"n": 3, DROPPED_METRIC: 1}
        assert spool.dropped_total == 1


def test_reported_drops_add_up_even_when_the_reporting_sample_is_dropped(
    tmp_path: Path,
) -> None:
    with Spool(tmp_path / "s.db", max_rows=2) as spool:
        for n in range(10):
            spool.append(_sample(n))
        remaining = spool.peek(10)
        assert [item.sample["metrics"]["n"] for item in remaining] == [8, 9]
        reported = sum(item.sample["metrics"].get(DROPPED_METRIC, 0) for item in remaining)
        assert reported == spool.dropped_total == 8


def test_drop_counter_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, max_rows=1) as spool:
        spool.append(_sample(0))
        spool.append(_sample(1))
    with Spool(path, max_rows=1) as spool:
        assert spool.dropped_total == 1


def test_discard_counts_rejections(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        spool.append(_sample(0))
        spool.discard(spool.peek(1))
        assert len(spool) == 0
        assert spool.counter("rejected_total") == 1


def test_a_bound_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        Spool(tmp_path / "s.db", max_rows=0)


def test_the_database_uses_wal_and_is_owner_only(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        mode = spool._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert stat.S_IMODE((tmp_path / "s.db").stat().st_mode) == 0o600
