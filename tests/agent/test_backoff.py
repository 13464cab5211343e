"""Retry timing: full-jitter exponential backoff and the interval jitter."""

from __future__ import annotations

import random

import pytest

from edge_agent.backoff import Backoff, jittered


def test_schedule_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    backoff = Backoff(random.Random(42), base_s=1.0, cap_s=60.0)
    delays = [backoff.next_delay() for _ in range(10)]
    reference = random.Random(42)
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert delays == [reference.uniform(0.0, c) for c in ceilings]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))


def test_same_seed_same_schedule() -> None:
    first = Backoff(random.Random(7))
    second = Backoff(random.Random(7))
    assert [first.next_delay() for _ in range(8)] == [second.next_delay() for _ in range(8)]


def test_reset_starts_over_from_the_base() -> None:
    backoff = Backoff(random.Random(1), base_s=1.0, cap_s=60.0)
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0


def test_retry_after_is_a_floor_capped_at_the_cap() -> None:
    backoff = Backoff(random.Random(3), base_s=1.0, cap_s=60.0)
    assert backoff.next_delay(retry_after_s=5.0) >= 5.0
    assert backoff.next_delay(retry_after_s=3600.0) == 60.0


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(random.Random(0))
    backoff.attempt = 10_000
    assert 0.0 <= backoff.next_delay() <= 60.0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(random.Random(0), base_s=0.0)
    with pytest.raises(ValueError):
        Backoff(random.Random(0), base_s=2.0, cap_s=1.0)


def test_interval_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(5)
    values = [jittered(10.0, rng) for _ in range(1000)]
    assert all(9.0 <= v <= 11.0 for v in values)
    assert max(values) - min(values) > 1.0  # it does vary
