"""The ``run`` loop: sample into the spool, drain it to the server, survive outages."""

from __future__ import annotations

import enum
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

from edge_agent.backoff import Backoff, jittered
from edge_agent.client import (
    CredentialRejected,
    HeartbeatResult,
    ModelOrder,
    ProfileOrder,
    RejectedBatch,
    RetryableError,
    TooLarge,
    format_field_errors,
    is_batch_level_error,
    iter_rejected_indexes,
)
from edge_agent.spool import Spool, SpooledSample

log = logging.getLogger(__name__)

CLOCK_SKEW_WARNING_S = 60.0


class Interrupted(BaseException):
    """Unwinds a blocking wait or request when a stop signal arrives.

    A BaseException, like KeyboardInterrupt, so that library code catching Exception
    does not swallow it.
    """


class StopToken:
    """Asks the runner to stop, from a signal handler or from another thread.

    It also carries the lighter request to ``wake``: go round the loop now (a nudge from
    the server says there is news), without stopping.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._stop_requested = False
        self._signalled = False
        self._woken = False
        self._interruptible = False

    @property
    def requested(self) -> bool:
        return self._signalled or self._stop_requested

    def request(self) -> None:
        """Stop from another thread; the runner wakes from its wait at once."""
        self._stop_requested = True
        self._event.set()

    def wake(self) -> None:
        """End the current wait early, from another thread, without stopping."""
        self._woken = True
        self._event.set()

    def consume_wake(self) -> bool:
        """Whether ``wake`` was called since the last time this was asked."""
        woken, self._woken = self._woken, False
        if woken and not self._stop_requested:
            self._event.clear()
        return woken

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of whatever was running. Taking
        # the Event's lock here could deadlock against the interrupted code, so set a
        # plain flag and, if the runner is blocked, unwind the blocking call instead.
        self._signalled = True
        if self._interruptible:
            raise Interrupted(signal.Signals(signum).name)

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle_signal)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A region (a wait, an HTTP request) that a stop signal may abort."""
        self._interruptible = True
        try:
            if self.requested:
                raise Interrupted("stop requested")
            yield
        finally:
            self._interruptible = False

    def wait(self, timeout_s: float) -> None:
        with self.interruptible():
            self._event.wait(timeout_s)


class Sampler(Protocol):
    def sample(self) -> dict[str, Any]: ...


class HeartbeatSender(Protocol):
    def heartbeat(
        self, telemetry: list[dict[str, Any]], links: list[dict[str, Any]] | None = None
    ) -> HeartbeatResult: ...


class RunOutcome(enum.Enum):
    STOPPED = "stopped"
    CREDENTIAL_REJECTED = "credential_rejected"


@dataclass
class RunnerConfig:
    interval_s: float = 10.0
    interval_is_override: bool = False  # --interval given: ignore the server's desired_state
    max_batch: int = 500
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    interval_jitter: float = 0.1


class AgentRunner:
    """Every interval, one sample into the spool; then the oldest spooled samples out.

    Samples leave the spool only after the server's 200 (or a 400 that says they can
    never be accepted), so an outage or a crash delays them but does not lose them.
    """

    def __init__(
        self,
        client: HeartbeatSender,
        spool: Spool,
        sampler: Sampler,
        config: RunnerConfig,
        stop: StopToken,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_interval_change: Callable[[float], None] | None = None,
        on_order: Callable[[ModelOrder], None] | None = None,
        on_profile: Callable[[ProfileOrder], None] | None = None,
    ) -> None:
        self._client = client
        self._on_order = on_order
        self._on_profile = on_profile
        self._spool = spool
        self._sampler = sampler
        self._config = config
        self._stop = stop
        self._rng = rng or random.Random()
        self._clock = clock
        self._on_interval_change = on_interval_change
        self._backoff = Backoff(self._rng, config.backoff_base_s, config.backoff_cap_s)
        self._batch_limit = config.max_batch
        self._interval_s = config.interval_s
        self._next_sample_at = 0.0
        self._warned_skew = False

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def run(self) -> RunOutcome:
        log.info("running: interval %.1f s, %d samples queued", self._interval_s, len(self._spool))
        try:
            self._loop()
        except Interrupted:
            pass
        except CredentialRejected as exc:
            log.error("credential rejected (%s); stopping, re-enroll this device", exc)
            return RunOutcome.CREDENTIAL_REJECTED
        log.info("stopped; %d samples stay queued for the next run", len(self._spool))
        return RunOutcome.STOPPED

    def nudge(self) -> None:
        """Heartbeat now rather than at the end of the interval (the server has news)."""
        self._stop.wake()

    def _loop(self) -> None:
        self._next_sample_at = retry_at = self._clock()
        while not self._stop.requested:
            now = self._clock()
            if self._stop.consume_wake():
                self._next_sample_at = retry_at = now
            if now >= self._next_sample_at:
                self._take_sample()
                self._next_sample_at = now + self._jittered_interval()
            queued = len(self._spool)
            if queued and now >= retry_at:
                try:
                    self._send_batch()
                except RetryableError as exc:
                    retry_at = self._clock() + self._retry_delay(exc, queued)
                else:
                    continue  # go round at once: drain a backlog promptly
            wake_at = min(self._next_sample_at, retry_at) if queued else self._next_sample_at
            self._stop.wait(max(wake_at - self._clock(), 0.0))

    def _jittered_interval(self) -> float:
        return jittered(self._interval_s, self._rng, self._config.interval_jitter)

    def _take_sample(self) -> None:
        try:
            sample = self._sampler.sample()
        except Exception:  # a failed measurement must not stop the heartbeats
            log.exception("taking a telemetry sample failed")
            return
        dropped = self._spool.append(sample)
        if dropped:
            log.warning(
                "spool full (%d samples): dropped the %d oldest", self._spool.max_rows, dropped
            )

    def _send_batch(self) -> None:
        batch = self._spool.peek(self._batch_limit)
        try:
            with self._stop.interruptible():
                result = self._client.heartbeat([item.sample for item in batch])
        except RejectedBatch as exc:
            self._handle_rejected(batch, exc)
        except TooLarge:
            self._handle_too_large(batch)
        else:
            self._spool.ack(batch)
            # A limit halved once (a 413, or a server with a smaller cap) is probed upwards
            # again, so a long backlog is not drained one sample at a time forever.
            self._batch_limit = min(self._config.max_batch, self._batch_limit * 2)
            self._on_success(result, len(batch))

    def _retry_delay(self, exc: RetryableError, queued: int) -> float:
        delay = self._backoff.next_delay(exc.retry_after_s)
        log.warning(
            "server unavailable (%s); retry %d in %.1f s, %d samples queued",
            exc,
            self._backoff.attempt,
            delay,
            queued,
        )
        return delay

    def _on_success(self, result: HeartbeatResult, sent: int) -> None:
        if self._backoff.attempt:
            log.info("server back after %d failed attempts", self._backoff.attempt)
        self._backoff.reset()
        log.debug("heartbeat: %d sent, %d accepted", sent, result.accepted)
        self._check_clock(result.server_time)
        if result.model is not None and self._on_order is not None:
            self._on_order(result.model)
        if result.profile is not None and self._on_profile is not None:
            self._on_profile(result.profile)
        wanted = result.heartbeat_interval_s
        if wanted and wanted != self._interval_s and not self._config.interval_is_override:
            log.info("server set heartbeat interval %.1f s -> %.1f s", self._interval_s, wanted)
            self._interval_s = wanted
            # A shorter interval applies now, not after the old, longer wait.
            self._next_sample_at = min(
                self._next_sample_at, self._clock() + self._jittered_interval()
            )
            if self._on_interval_change:
                self._on_interval_change(wanted)

    def _handle_rejected(self, batch: list[SpooledSample], exc: RejectedBatch) -> None:
        details = "; ".join(format_field_errors(exc.errors))
        bad = [batch[index] for index in iter_rejected_indexes(exc.errors, len(batch))]
        if bad and len(bad) < len(batch):
            # The rest of the batch was fine; it goes again without the culprits.
            log.error(
                "server rejected %d of %d samples, dropped: %s", len(bad), len(batch), details
            )
            self._spool.discard(bad)
        elif is_batch_level_error(exc.errors) and len(batch) > 1:
            self._batch_limit = max(1, len(batch) // 2)
            log.warning(
                "server refused the batch as a whole (%s); batches of %d now",
                details,
                self._batch_limit,
            )
        else:
            log.error("server rejected a batch of %d samples, dropped: %s", len(batch), details)
            self._spool.discard(batch)

    def _handle_too_large(self, batch: list[SpooledSample]) -> None:
        if len(batch) == 1:
            log.error("a single sample exceeds the server's body limit; dropped it")
            self._spool.discard(batch)
            return
        self._batch_limit = max(1, len(batch) // 2)
        log.warning("413 body too large; batches of %d samples now", self._batch_limit)

    def _check_clock(self, server_time: str | None) -> None:
        # The server refuses samples stamped > 5 min ahead of its clock; say why early.
        if not server_time or self._warned_skew:
            return
        try:
            server = datetime.fromisoformat(server_time.replace("Z", "+00:00"))
        except ValueError:
            return
        skew = (datetime.now(UTC) - server).total_seconds()
        if abs(skew) > CLOCK_SKEW_WARNING_S:
            self._warned_skew = True
            log.warning("local clock is %.0f s off the server's; check NTP", skew)
