"""Test helpers for the edge agent: a stand-in control plane and a polling wait."""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BATCH = 500


class StandInControlPlane:
    """A tiny HTTP server that stands in for the Triad control plane in agent tests.

    It speaks just enough of docs/agent-protocol.md (enroll and heartbeat, with the
    protocol's status codes) to exercise the agent's client, runner and simulator in
    isolation, and it can go away and come back on the same port to fake an outage.
    It is not the control plane: the real end-to-end test, an agent subprocess against
    the Django server, lives with the integration tests.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens = {"tet_good"}
        self.credentials: dict[str, str] = {}  # credential -> device id
        self.retired: set[str] = set()  # device ids answered with 403
        self.enrollments: list[dict[str, Any]] = []
        self.heartbeats: list[tuple[str, dict[str, Any]]] = []  # (device id, body)
        self.heartbeat_interval_s = 10.0
        self.fail_with: int | None = None  # answer every heartbeat with this status
        self.enroll_answer: tuple[int, dict[str, Any]] | None = None  # forced enroll answer
        self.hang_s = 0.0  # sleep this long before answering a heartbeat
        self.heartbeat_requests = 0  # heartbeats that reached the server, answered or not
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again, on the same port after ``stop``)."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Go away: connections are refused until ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def register(self) -> tuple[str, str]:
        device_id = str(uuid.uuid4())
        credential = f"dev_{device_id}.{secrets.token_urlsafe(16)}"
        with self.lock:
            self.credentials[credential] = device_id
        return device_id, credential

    def revoke_all(self) -> None:
        with self.lock:
            self.credentials.clear()

    def received(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """Every telemetry sample stored, in arrival order."""
        with self.lock:
            return [
                sample
                for device, body in self.heartbeats
                if device_id is None or device == device_id
                for sample in body["telemetry"]
            ]

    # --- request handling (called from the handler threads)

    def enroll(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.enroll_answer is not None:
            return self.enroll_answer
        if body.get("token") not in self.tokens:
            return 400, {"token": ["Enrollment token is invalid or has expired."]}
        if body.get("tier") not in ("cloud", "edge", "end"):
            return 400, {"tier": [f'"{body.get("tier")}" is not a valid choice.']}
        device_id, credential = self.register()
        with self.lock:
            self.enrollments.append(body)
        return 201, {
            "device_id": device_id,
            "credential": credential,
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "server_time": _now(),
        }

    def heartbeat(self, authorization: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        credential = authorization.removeprefix("Bearer ")
        with self.lock:
            self.heartbeat_requests += 1
            device_id = self.credentials.get(credential)
        if device_id is None:
            return 401, {"detail": "Invalid device credential.", "code": "authentication_failed"}
        if device_id in self.retired:
            return 403, {"detail": "Device is retired.", "code": "device_retired"}
        if self.hang_s:
            time.sleep(self.hang_s)
        if self.fail_with is not None:
            return self.fail_with, {"detail": "Unavailable."}
        telemetry = body.get("telemetry")
        if not isinstance(telemetry, list):
            return 400, {"telemetry": ["Expected a list of items."]}
        if len(telemetry) > MAX_BATCH:
            return 400, {"telemetry": [f"Ensure this field has no more than {MAX_BATCH} elements."]}
        errors = [_sample_errors(sample) for sample in telemetry]
        if any(errors):
            return 400, {"telemetry": errors}
        with self.lock:
            self.heartbeats.append((device_id, body))
        return 200, {
            "accepted": len(telemetry),
            "server_time": _now(),
            "desired_state": {"heartbeat_interval_s": self.heartbeat_interval_s},
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sample_errors(sample: Any) -> dict[str, list[str]]:
    if not isinstance(sample, dict) or "ts" not in sample:
        return {"ts": ["This field is required."]}
    errors: dict[str, list[str]] = {}
    for key, value in sample.items():
        if isinstance(value, (int, float)) and value < 0:
            errors[key] = ["Ensure this value is greater than or equal to 0."]
        percent = key in ("cpu_percent", "memory_percent")
        if percent and isinstance(value, (int, float)) and value > 100:
            errors[key] = ["Ensure this value is less than or equal to 100."]
    return errors


def _handler_for(plane: StandInControlPlane) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._answer(400, {"detail": "JSON parse error."})
                return
            if self.path == "/api/v1/agents/enroll/":
                self._answer(*plane.enroll(body))
            elif self.path == "/api/v1/agents/heartbeat/":
                self._answer(*plane.heartbeat(self.headers.get("Authorization", ""), body))
            else:
                self._answer(404, {"detail": "Not found."})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)
