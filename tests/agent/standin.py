"""Test helpers for the edge agent: a stand-in control plane and a polling wait."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_agent.manifest import TrustStore, public_key_raw, sign_document, sign_rotation

from .signing import iso, make_key, manifest_body

MAX_BATCH = 500
ARTIFACTS_PATH = "/api/v1/agents/artifacts/"
MODEL_STATUS_PATH = "/api/v1/agents/model-status/"
PROFILE_RESULT_PATH = "/api/v1/agents/profile-result/"
MODEL_STATES = ("downloading", "verifying", "active", "failed")
NUDGE_PATH = "/ws/agents/"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_RANGE = re.compile(r"^bytes=(\d+)-$")


class StandInControlPlane:
    """A tiny HTTP server that stands in for the Triad control plane in agent tests.

    It speaks just enough of docs/agent-protocol.md (enroll and heartbeat, with the
    protocol's status codes) and docs/rollouts.md (signed orders, artifacts with Range,
    model-status reports) to exercise the agent's client, runner, reconciler and
    simulator in isolation, and it can go away and come back on the same port to fake
    an outage.
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
        # Artifacts (docs/rollouts.md): bytes by sha256, and the faults a test can inject.
        self.artifacts: dict[str, bytes] = {}
        self.artifact_requests: list[tuple[str, str | None]] = []  # (sha256, Range header)
        self.cut_artifacts_after: list[int] = []  # the next answers send this many bytes, then drop
        self.go_away_after_cut = False  # and the server stops listening, as in a crash
        self.artifact_status: int | None = None  # answer artifact requests with this status
        self.ignore_range = False  # answer 200 with every byte, as a naive server would
        # Signed orders and the reports about them.
        self.signing_key = make_key("stand-in")
        self.send_signing = True  # False: enroll as a server from before signed rollouts
        self.rotations: list[dict[str, Any]] = []
        self.orders: dict[str | None, dict[str, Any]] = {}  # device id (None: all) -> model
        self.next_version = 1
        self.status_reports: list[tuple[str, dict[str, Any]]] = []  # (device id, body)
        self.status_fail_with: int | None = None  # answer model-status reports with this
        self.profile_orders: dict[str | None, dict[str, Any]] = {}  # device id (None: all)
        self.profile_results: list[tuple[str, dict[str, Any]]] = []  # (device id, body)
        # The nudge WebSocket: just enough RFC 6455 to accept agents and push text frames.
        self.websockets_enabled = True  # False: 404, as a server without the endpoint
        self.websocket_attempts = 0
        self._websockets: dict[socket.socket, str] = {}  # open connection -> device id
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
        """Go away: connections are refused until ``start``, open WebSockets are cut."""
        self.drop_websockets()
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

    def add_artifact(self, data: bytes, sha256: str | None = None) -> str:
        """Serve ``data`` under its sha256 (or under another one, to fake tampering)."""
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        with self.lock:
            self.artifacts[sha256] = data
        return sha256

    def signing_info(self) -> dict[str, str]:
        signing = TrustStore.pinned(public_key_raw(self.signing_key)).to_signing_json()
        assert signing is not None
        return signing

    def rotate_key(self, name: str) -> None:
        """Sign a rotation statement with the current key and sign with the new one after."""
        new_key = make_key(name)
        with self.lock:
            self.rotations.append(sign_rotation(self.signing_key, new_key, iso(datetime.now(UTC))))
            self.signing_key = new_key

    def sign_manifest(
        self,
        data: bytes | None,
        io: dict[str, Any] | None = None,
        version: int | None = None,
        **manifest_fields: Any,
    ) -> tuple[dict[str, Any], str | None]:
        """A signed manifest for ``data`` (served from now on) and its sha256."""
        with self.lock:
            version = self.next_version if version is None else version
            self.next_version = max(self.next_version, version + 1)
        body = manifest_body(version, data, io, **manifest_fields)
        sha256 = body["artifact"]["sha256"] if data is not None else None
        if data is not None and sha256 not in self.artifacts:
            self.add_artifact(data, sha256)
        return sign_document(self.signing_key, body), sha256

    def publish(
        self,
        data: bytes | None,
        io: dict[str, Any] | None = None,
        *,
        device_id: str | None = None,
        deployment_id: str | None = None,
        version: int | None = None,
        latency_budget_ms: float | None = None,
        probe_runs: int = 2,
        **manifest_fields: Any,
    ) -> dict[str, Any]:
        """Sign a manifest for ``data`` (None: run nothing), serve it, order it; the order."""
        manifest, sha256 = self.sign_manifest(data, io, version, **manifest_fields)
        order = {
            "deployment_id": deployment_id or str(uuid.uuid4()),
            "manifest": manifest,
            "artifact_url": f"{ARTIFACTS_PATH}{sha256}/" if sha256 else None,
            "health_check": {"latency_budget_ms": latency_budget_ms, "probe_runs": probe_runs},
            "key_rotations": list(self.rotations),
        }
        self.order(order, device_id)
        return order

    def publish_profile(
        self,
        data: bytes,
        io: dict[str, Any] | None = None,
        *,
        runs: int = 3,
        device_id: str | None = None,
        version: int | None = None,
        **manifest_fields: Any,
    ) -> dict[str, Any]:
        """Order devices to time ``data`` (docs/rollouts.md, "Profiling"); the order."""
        manifest, sha256 = self.sign_manifest(data, io, version, **manifest_fields)
        order = {
            "run_id": str(uuid.uuid4()),
            "manifest": manifest,
            "artifact_url": f"{ARTIFACTS_PATH}{sha256}/",
            "runs": runs,
            "key_rotations": list(self.rotations),
        }
        with self.lock:
            self.profile_orders[device_id] = order
        return order

    def order(self, order: dict[str, Any] | None, device_id: str | None = None) -> None:
        """Put ``order`` in the heartbeat answers of ``device_id`` (None: of every device)."""
        with self.lock:
            if order is None:
                self.orders.pop(device_id, None)
            else:
                self.orders[device_id] = order

    def reports(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """Every model-status report stored, in arrival order."""
        with self.lock:
            return [body for device, body in self.status_reports if device_id in (None, device)]

    def nudge(self, device_id: str | None = None) -> int:
        """Send ``{"type": "nudge"}`` to the agents connected (one, or all); how many got it."""
        payload = json.dumps({"type": "nudge"}).encode()
        frame = bytes([0x81, len(payload)]) + payload  # FIN + text, unmasked, < 126 bytes
        sent = 0
        with self.lock:
            targets = [s for s, d in self._websockets.items() if device_id in (None, d)]
        for sock in targets:
            try:
                sock.sendall(frame)
                sent += 1
            except OSError:
                with self.lock:
                    self._websockets.pop(sock, None)
        return sent

    def websocket_devices(self) -> list[str]:
        with self.lock:
            return list(self._websockets.values())

    def drop_websockets(self) -> None:
        """Cut every nudge connection, as a restarting server would."""
        with self.lock:
            sockets, self._websockets = list(self._websockets), {}
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

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
        answer = {
            "device_id": device_id,
            "credential": credential,
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "server_time": _now(),
        }
        if self.send_signing:
            answer["signing"] = self.signing_info()
        return 201, answer

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
            order = self.orders.get(device_id, self.orders.get(None))
            profile = self.profile_orders.get(device_id, self.profile_orders.get(None))
            measured = {(d, b["run_id"]) for d, b in self.profile_results}
        desired: dict[str, Any] = {"heartbeat_interval_s": self.heartbeat_interval_s}
        if order is not None:
            desired["model"] = order
        if profile is not None and (device_id, profile["run_id"]) not in measured:
            desired["profile"] = profile  # withdrawn once the device reported
        return 200, {"accepted": len(telemetry), "server_time": _now(), "desired_state": desired}

    def profile_result(
        self, authorization: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            device_id = self.credentials.get(authorization.removeprefix("Bearer "))
        if device_id is None:
            return 401, {"detail": "Invalid device credential.", "code": "authentication_failed"}
        state = body.get("state")
        if state not in ("measured", "failed"):
            return 400, {"state": [f'"{state}" is not a valid choice.']}
        if state == "measured" and not (0 <= body.get("p50_ms", -1) <= body.get("p95_ms", -1)):
            return 400, {"p95_ms": ["Must be at least p50_ms."]}
        if state == "failed" and not body.get("reason"):
            return 400, {"reason": ["Required when the state is failed."]}
        with self.lock:
            self.profile_results.append((device_id, body))
        return 200, {"state": state}

    def model_status(self, authorization: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            device_id = self.credentials.get(authorization.removeprefix("Bearer "))
        if device_id is None:
            return 401, {"detail": "Invalid device credential.", "code": "authentication_failed"}
        if self.status_fail_with is not None:
            return self.status_fail_with, {"detail": "Unavailable."}
        if body.get("state") not in MODEL_STATES:
            return 400, {"state": [f'"{body.get("state")}" is not a valid choice.']}
        if body.get("state") == "failed" and not body.get("reason"):
            return 400, {"reason": ["Required when the state is failed."]}
        with self.lock:
            self.status_reports.append((device_id, body))
        return 200, {"state": body["state"]}

    def artifact(
        self, authorization: str, sha256: str, range_header: str | None
    ) -> tuple[int, dict[str, str], bytes, int | None]:
        """(status, headers, body, bytes to send before dropping the connection or None)."""
        with self.lock:
            self.artifact_requests.append((sha256, range_header))
            known = authorization.removeprefix("Bearer ") in self.credentials
            data = self.artifacts.get(sha256)
            cut = self.cut_artifacts_after.pop(0) if self.cut_artifacts_after else None
        if not known:
            return 401, {}, b'{"detail": "Invalid device credential."}', None
        if self.artifact_status is not None:
            return self.artifact_status, {}, b'{"detail": "Unavailable."}', None
        if data is None:
            return 404, {}, b'{"detail": "Not found."}', None
        headers = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}
        match = _RANGE.match(range_header or "")
        if match is None or self.ignore_range:
            return 200, headers, data, cut
        start = int(match.group(1))
        if start >= len(data):
            return 416, {**headers, "Content-Range": f"bytes */{len(data)}"}, b"", None
        content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return 206, {**headers, "Content-Range": content_range}, data[start:], cut


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
            elif self.path == MODEL_STATUS_PATH:
                self._answer(*plane.model_status(self.headers.get("Authorization", ""), body))
            elif self.path == PROFILE_RESULT_PATH:
                self._answer(*plane.profile_result(self.headers.get("Authorization", ""), body))
            else:
                self._answer(404, {"detail": "Not found."})

        def do_GET(self) -> None:
            if self.path == NUDGE_PATH:
                self._websocket()
                return
            if not self.path.startswith(ARTIFACTS_PATH):
                self._answer(404, {"detail": "Not found."})
                return
            sha256 = self.path.removeprefix(ARTIFACTS_PATH).strip("/")
            status, headers, body, cut = plane.artifact(
                self.headers.get("Authorization", ""), sha256, self.headers.get("Range")
            )
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/octet-stream" if status < 300 else "application/json"
            )
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if cut is None:
                self.wfile.write(body)
                return
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees a short read
            self.close_connection = True
            if plane.go_away_after_cut:
                plane.stop()

        def _websocket(self) -> None:
            with plane.lock:
                plane.websocket_attempts += 1
                credential = self.headers.get("Authorization", "").removeprefix("Bearer ")
                device_id = plane.credentials.get(credential)
            if not plane.websockets_enabled:
                self._answer(404, {"detail": "Not found."})
                return
            if device_id is None:
                self._answer(401, {"detail": "Invalid device credential."})
                return
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest())
            self.protocol_version = "HTTP/1.1"  # a 101 must not claim HTTP/1.0
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept.decode())
            self.end_headers()
            self.wfile.flush()
            sock = self.connection
            with plane.lock:
                plane._websockets[sock] = device_id
            self._hold_websocket(sock)
            with plane.lock:
                plane._websockets.pop(sock, None)
            self.close_connection = True

        def _hold_websocket(self, sock: socket.socket) -> None:
            # Client frames (pings, close) are read and dropped; a close is answered so the
            # agent's close handshake ends at once.
            while True:
                try:
                    data = sock.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                if data[0] & 0x0F == 0x8:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"\x88\x00")
                    return

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


class Reports:
    """A status sink that keeps every report, as the server would receive them."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def report(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.bodies.append(body)

    def states(self) -> list[str]:
        with self.lock:
            return [body["state"] for body in self.bodies]

    @property
    def last(self) -> dict[str, Any]:
        with self.lock:
            return self.bodies[-1]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)
