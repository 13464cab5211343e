"""A real Celery worker sweeps the test database, its events reach a browser's WebSocket
through a real ASGI server, and a task whose worker dies is run again.

The sweep and WebSocket tests run on Redis (as in production and CI) and on the embedded
stack (filesystem broker, SQLite channel layer: the demo on a bare machine, where Channels'
in-memory layer would silently drop every worker event), whatever this process runs on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from datetime import timedelta
from typing import Any

import psutil
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from devices.models import Device, DeviceStatus, StatusChange
from tests.fleet.helpers import device_summaries, make_device, mentions
from tests.integration.conftest import Stack
from tests.integration.processes import Processes, Server, login

pytestmark = pytest.mark.service


def overdue_device(name: str) -> Device:
    return make_device(name, offline_after=timezone.now() - timedelta(seconds=5))


def status_of(device: Device) -> str:
    return Device.objects.values_list("status", flat=True).get(pk=device.pk)


def test_worker_sweeps_an_overdue_device_offline(stack: Stack, processes: Processes) -> None:
    worker = processes.worker(stack.env)
    device = overdue_device("cam-overdue")
    bystander = make_device("cam-fine", offline_after=timezone.now() + timedelta(minutes=5))
    processes.wait_worker_ready(worker)

    task_id = stack.send_sweep()

    processes.wait_until(lambda: status_of(device) == DeviceStatus.OFFLINE, "the sweep", 30)
    processes.wait_task_succeeded(worker, task_id)
    assert StatusChange.objects.filter(device=device, to_status=DeviceStatus.OFFLINE).count() == 1
    assert status_of(bystander) == DeviceStatus.ONLINE


def fleet_socket(server: Server, cookies: dict[str, str] | None = None) -> ClientConnection:
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    return connect(
        f"ws://127.0.0.1:{server.port}/ws/fleet/",
        origin=Origin(server.url),
        additional_headers=headers,
        open_timeout=20,
    )


IDLE_S = 6.5


def stay_open_while_idle(sockets: list[ClientConnection], processes: Processes) -> None:
    """Every socket outlives IDLE_S without traffic (other fleet events are fine)."""
    deadline = time.monotonic() + IDLE_S
    for number, socket in enumerate(sockets):
        try:
            while (left := deadline - time.monotonic()) > 0:
                socket.recv(timeout=left)
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            pytest.fail(
                f"the server closed idle fleet socket {number} after less than {IDLE_S} s: "
                f"{closed!r}\n{processes.logs()}"
            )


def test_worker_event_reaches_a_websocket_client(
    stack: Stack, processes: Processes, operator_login: tuple[str, str]
) -> None:
    server = processes.server(stack.env)
    worker = processes.worker(stack.env)
    processes.wait_server_ready(server)
    with pytest.raises(InvalidStatus) as refused:
        fleet_socket(server)  # not logged in
    assert refused.value.response.status_code == 403
    cookies = login(server.url, *operator_login)

    with contextlib.ExitStack() as sockets:
        # Fleet pages sit idle for long stretches; sockets must outlive the channel layer's
        # blocking receive (channels-redis waits in 5 s BZPOPMINs; with redis-py 8's 5 s
        # socket timeout that read raced its reply and crashed consumers). Several sockets,
        # as each one is a draw in that race.
        idle = [sockets.enter_context(fleet_socket(server, cookies)) for _ in range(3)]
        stay_open_while_idle(idle, processes)
        socket = idle[0]
        processes.wait_worker_ready(worker)
        # The consumer joined the fleet group before accepting, so from here on every
        # fleet event is meant for this socket.
        device = overdue_device("cam-ws")
        task_id = stack.send_sweep()

        def offline_event() -> dict[str, Any] | None:
            try:
                event = json.loads(socket.recv(timeout=0.5))
            except TimeoutError:
                return None
            return event if mentions(event, device.id, DeviceStatus.OFFLINE) else None

        event: dict[str, Any] = processes.wait_until(
            offline_event, "the offline event on the WebSocket", 30, 0
        )
    processes.wait_task_succeeded(worker, task_id)
    assert event["type"] == "devices"
    names = [item["name"] for item in device_summaries(event) if item["id"] == str(device.id)]
    assert names == ["cam-ws"]
    assert status_of(device) == DeviceStatus.OFFLINE


def waiting_on_a_lock() -> bool:
    """Whether another session waits on a lock this test holds (PostgreSQL only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        return bool(cursor.fetchone()[0])


def test_a_task_whose_worker_is_killed_mid_task_runs_again(
    subprocess_env: dict[str, str], processes: Processes
) -> None:
    """acks_late + reject_on_worker_lost: the message goes back to the queue, not to waste.

    The sweep is held mid-flight honestly: this test locks the device row (PostgreSQL) or
    the database (SQLite) before the worker starts, so any sweep blocks in its UPDATE until
    the lock is released. The pool process running it is then SIGKILLed.

    On this process's own broker only (Redis in CI): the test waits out billiard's
    `worker_lost_wait` (10 s), too slow to repeat per broker.
    """
    stack = Stack("redis" if settings.REDIS_URL else "embedded", subprocess_env)
    device = overdue_device("cam-killed")
    received = re.compile(r"sweep_offline_devices\[([0-9a-f-]+)\] received")
    with transaction.atomic():
        Device.objects.select_for_update().get(pk=device.pk)
        worker = processes.worker(stack.env, pool="prefork")
        processes.wait_worker_ready(worker)
        task_id = stack.send_sweep()
        # Normally our sweep; a sweep some earlier run left queued serves as well.
        match = processes.wait_until(
            lambda: received.search(worker.log()), "the worker to receive a sweep", 30
        )
        running = match[1]
        if connection.vendor == "postgresql":
            processes.wait_until(waiting_on_a_lock, "the sweep to block on the row lock", 30)
        else:
            time.sleep(1.0)  # SQLite shows no waiters; the WorkerLostError below proves it
        pool_process = psutil.Process(worker.pid).children()[0]
        os.kill(pool_process.pid, signal.SIGKILL)
        processes.wait_until(
            lambda: "exited with 'signal 9 (SIGKILL)'" in worker.log(), "the child's death", 30
        )
        assert status_of(device) == DeviceStatus.ONLINE

    # The pool reports the job lost (on the filesystem broker only after billiard's
    # worker_lost_wait, 10 s), rejects the message back onto the queue, and the same task
    # runs again in the new pool process.
    processes.wait_until(
        lambda: "WorkerLostError" in worker.log(), "the worker to report the lost job", 40
    )
    processes.wait_task_succeeded(worker, running)
    processes.wait_task_succeeded(worker, task_id)
    assert len(received.findall(worker.log())) >= 2
    assert status_of(device) == DeviceStatus.OFFLINE
    assert StatusChange.objects.filter(device=device).count() == 1
