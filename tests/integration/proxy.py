"""A TCP proxy between agents and the server that can cut a download halfway.

It stands in for the network, which cannot be cut on purpose here: once an artifact's
answer (an `application/octet-stream` body) has passed `cut_after_bytes`, it closes both
sides of that connection and refuses every connection for `outage_s`, as a server that
went away would. It records what clients sent, so a test can see the `Range` they resumed
with.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CuttingProxy:
    def __init__(self, upstream_port: int, cut_after_bytes: int, outage_s: float) -> None:
        self.upstream_port = upstream_port
        self.cut_after_bytes = cut_after_bytes
        self.outage_s = outage_s
        self.requests: list[bytes] = []
        self.cuts = 0
        self._down_until = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                client.close()  # the server is "gone"
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        threading.Thread(target=self._upload, args=(client, upstream), daemon=True).start()
        self._download(upstream, client)

    def _upload(self, client: socket.socket, upstream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                self.requests.append(data)
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _download(self, upstream: socket.socket, client: socket.socket) -> None:
        artifact_bytes = 0
        in_artifact = False
        try:
            while data := upstream.recv(65536):
                if b"application/octet-stream" in data:
                    in_artifact = True
                if in_artifact:
                    artifact_bytes += len(data)
                    if self.cuts == 0 and artifact_bytes > self.cut_after_bytes:
                        self.cuts += 1
                        self._down_until = time.monotonic() + self.outage_s
                        return
                client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def ranges_asked(self) -> list[str]:
        """The `Range` headers clients sent, in order."""
        found = []
        for chunk in self.requests:
            for line in chunk.split(b"\r\n"):
                if line.lower().startswith(b"range:"):
                    found.append(line.split(b":", 1)[1].strip().decode())
        return found
