"""Retry delays: exponential backoff with full jitter, and jittered intervals."""

from __future__ import annotations

import random


class Backoff:
    """Delay n (from 0) is uniform in [0, min(cap, base * 2**n)]; ``reset`` after a success.

    Full jitter (rather than a fixed doubling) keeps a fleet that lost the server at the
    same moment from coming back in synchronised waves.
    """

    def __init__(self, rng: random.Random, base_s: float = 1.0, cap_s: float = 60.0) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self._rng = rng
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def ceiling(self, attempt: int) -> float:
        # min() before the power would overflow; cap the exponent instead.
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The next delay; a server's Retry-After is a floor, but never beyond the cap."""
        delay = self._rng.uniform(0.0, self.ceiling(self.attempt))
        self.attempt += 1
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.cap_s))
        return delay

    def reset(self) -> None:
        self.attempt = 0


def jittered(interval_s: float, rng: random.Random, fraction: float = 0.1) -> float:
    """``interval_s`` ± ``fraction``, so agents started together drift apart."""
    return interval_s * rng.uniform(1.0 - fraction, 1.0 + fraction)
