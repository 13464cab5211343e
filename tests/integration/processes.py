"""Real processes for integration tests: an ASGI server, Celery workers, agents.

Each process runs in a process group of its own, writes its output to a log file (shown
when a wait fails), and is stopped, then killed, by the `processes` fixture's teardown.
Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import ROOT

PYTHON = sys.executable
# Generous: these bound a hang, they are not expected durations (a loaded 2-core machine
# takes seconds to import Django and Celery).
START_TIMEOUT_S = 60.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        log_path: Path,
        stop_signal: int = signal.SIGTERM,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.stop_timeout_s = stop_timeout_s
        self.stopped = False  # stopped on purpose: its exit is no failure
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout_s: float | None = None) -> int:
        """Ask the whole group to stop; kill it if it has not within the timeout."""
        self.stopped = True
        if self.alive():
            self.signal_group(self.stop_signal)
            try:
                self.popen.wait(timeout=self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that outlived their parent go too.
        self.signal_group(signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
        return int(self.popen.returncode)


class Processes:
    """The processes one test started; the fixture stops all of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Process] = []

    def start(self, name: str, args: Sequence[str], env: dict[str, str], **kw: Any) -> Process:
        log_path = self.log_dir / f"{name}.log"
        process = Process(name, args, env, log_path, **kw)
        self.started.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (last lines) ---\n{p.tail()}" for p in self.started)

    def wait_until(
        self,
        check: Callable[[], T | None],
        what: str,
        timeout_s: float = 30.0,
        interval_s: float = 0.1,
    ) -> T:
        """Poll `check` until it returns something truthy; fail with every process's log."""
        deadline = time.monotonic() + timeout_s
        while True:
            for process in self.started:
                if not process.stopped and process.popen.poll() is not None:
                    raise AssertionError(
                        f"{process.name} exited with {process.popen.returncode} while waiting "
                        f"for {what}\n{self.logs()}"
                    )
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.logs()}"
                )
            time.sleep(interval_s)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()

    # --- the product's processes -----------------------------------------------------
    def server(self, env: dict[str, str], port: int | None = None, name: str = "server") -> Server:
        port = port or free_port()
        process = self.start(
            name,
            [
                PYTHON,
                "-m",
                "uvicorn",
                "controlplane.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                # Enough for in-flight requests. Not 5 s: a WebSocket consumer that just
                # disconnected from channels-redis may sit out its 5 s BZPOPMIN.
                "--timeout-graceful-shutdown",
                "2",
            ],
            env,
        )
        return Server(process, port)

    def worker(
        self,
        env: dict[str, str],
        pool: str = "solo",
        name: str = "worker",
        queues: str = "celery,compression",
    ) -> Process:
        return self.start(
            name,
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "worker",
                "--pool",
                pool,
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                # By default, the default queue and the compression jobs' (CELERY_TASK_ROUTES).
                "-Q",
                queues,
                "--loglevel",
                "info",
                "--hostname",
                f"{name}-{os.getpid()}@%h",
            ],
            env,
            # Celery's warm shutdown takes seconds (its loop polls the broker), and every test
            # has waited for its tasks' effects before teardown: a short grace, then SIGKILL.
            stop_timeout_s=0.3,
        )

    def wait_worker_ready(self, worker: Process) -> None:
        self.wait_until(
            lambda: re.search(r"\bready\.", worker.log()), f"{worker.name} ready", START_TIMEOUT_S
        )

    def wait_task_succeeded(self, worker: Process, task_id: str, timeout_s: float = 30) -> None:
        """Wait for the worker to finish a task, so that teardown never kills it mid-task
        (with acks_late, that would leave the message queued for the next test's worker)."""
        done = f"[{task_id}] succeeded"
        self.wait_until(lambda: done in worker.log(), f"task {task_id} to succeed", timeout_s)

    def wait_server_ready(self, server: Server) -> None:
        self.wait_until(server.healthy, f"{server.process.name} /healthz", START_TIMEOUT_S)


class Server:
    """A uvicorn process serving the product on 127.0.0.1:port."""

    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def processes_fixture(tmp_path: Path) -> Iterator[Processes]:
    registry = Processes(tmp_path)
    try:
        yield registry
    finally:
        registry.stop_all()


def login(base_url: str, username: str, password: str) -> dict[str, str]:
    """Log in through the login form, as a browser does; return the cookies it got."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        page = client.get("/login/")
        assert page.status_code == 200, page.text
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, page.text
        answer = client.post(
            "/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": match[1]},
            headers={"Referer": f"{base_url}/login/"},
        )
        assert answer.status_code == 302, answer.text
        assert answer.headers["location"] == "/", answer.headers
        cookies = dict(client.cookies.items())
    assert {"sessionid", "csrftoken"} <= cookies.keys(), cookies
    return cookies
