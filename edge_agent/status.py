"""Reports to the server, delivered from their own thread (docs/rollouts.md).

An install must never wait on the server: the reconciler hands a report over and goes on.
A report describes a state, so when the server is away only the latest unsent report of
each deployment (or profiling run) is kept; an older one would only tell the server
something already past.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_agent.backoff import Backoff
from edge_agent.client import CredentialRejected, Rejected, RetryableError, TooLarge

log = logging.getLogger(__name__)


class StatusReporter:
    """Sends reports in the order their states changed; retries with backoff, resends the latest."""

    def __init__(
        self,
        send: Callable[[dict[str, Any]], object],
        rng: random.Random | None = None,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        key: str = "deployment_id",
    ) -> None:
        self._send = send
        self._key = key
        self._backoff = Backoff(rng or random.Random(), backoff_base_s, backoff_cap_s)
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[str, dict[str, Any]] = {}  # key -> latest unsent report
        self._retry_at = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def report(self, body: dict[str, Any]) -> None:
        """Queue ``body`` in place of any unsent report with the same key; never blocks."""
        with self._cond:
            self._pending.pop(body[self._key], None)  # re-inserted last: the newest state
            self._pending[body[self._key]] = body
            self._cond.notify_all()

    def pending(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._pending.values())

    def start(self) -> StatusReporter:
        self._thread = threading.Thread(target=self._run, name="reports", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while (body := self._next_due()) is not None:
            self._deliver(body)

    def _next_due(self) -> dict[str, Any] | None:
        with self._cond:
            while not self._stopping:
                wait_s = self._retry_at - self._clock()
                if self._pending and wait_s <= 0:
                    return next(iter(self._pending.values()))
                self._cond.wait(timeout=wait_s if self._pending else None)
            return None

    def _deliver(self, body: dict[str, Any]) -> None:
        try:
            self._send(body)
        except RetryableError as exc:
            delay = self._backoff.next_delay(exc.retry_after_s)
            self._retry_at = self._clock() + delay
            log.info("report not delivered (%s); retry in %.1f s", exc, delay)
            return
        except (Rejected, TooLarge, CredentialRejected) as exc:
            log.error("the server refused a report, dropped: %s (%s)", exc, body)
        except Exception:  # the reporter thread must outlive any surprise
            log.exception("sending a report failed; dropped")
        else:
            self._backoff.reset()
        with self._cond:
            if self._pending.get(body[self._key]) is body:
                del self._pending[body[self._key]]
