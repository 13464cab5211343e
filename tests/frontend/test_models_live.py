"""Model hub WebSockets: the events `models_hub.events` sends on commit reach the sockets of
a compression job's page and of the job list, and only operators and admins get them.

The changes are made through the actions (and a whole job through its Celery task, run in
this process), so the events travel as in production: through the SQLite channel layer, or
Redis when REDIS_URL is set.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from models_hub import actions
from models_hub.models import CompressionJob
from tests.frontend.hub_helpers import quick_measures, register_data, register_model, run_here
from tests.frontend.test_live import open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(hub_media: Path) -> Path:
    return hub_media


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    quick_measures(monkeypatch)


def queued_job(files: dict[str, Path], user: Any) -> CompressionJob:
    # Its task is sent to the broker on commit; nobody consumes it in these tests (a worker
    # that finds it later finds no such job and drops it).
    model = register_model(files["model.onnx"], user, name="live")
    calibration, evaluation = register_data(files, user)
    return actions.submit_compression_job(
        model=model,
        recipe="int8-static",
        calibration=calibration,
        evaluation=evaluation,
        created_by=user,
    )


async def receive(socket: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next message of this kind (a job's status may be announced more than once)."""
    while True:
        message: dict[str, Any] = await socket.receive_json_from(timeout=5)
        if message["type"] == kind:
            return message


@pytest.mark.parametrize("path", [f"/ws/models/jobs/{uuid.uuid4()}/", "/ws/models/jobs/"])
async def test_sockets_refuse_anonymous_and_role_less_users(nobody: Any, path: str) -> None:
    for user in (None, nobody):
        socket, connected = await open_socket(path, user)
        assert not connected
        await socket.disconnect()


async def test_a_job_page_gets_status_progress_and_log_lines(
    operator: Any, hub_files: dict[str, Path]
) -> None:
    job = await sync_to_async(queued_job)(hub_files, operator)
    socket, connected = await open_socket(f"/ws/models/jobs/{job.id}/", operator)
    listing, listed = await open_socket("/ws/models/jobs/", operator)
    assert connected and listed
    try:
        attempt = await sync_to_async(actions.start_attempt)(job.id)
        message = await receive(socket, "status")
        assert message["job"]["id"] == str(job.id) and message["job"]["status"] == "running"
        assert (await receive(listing, "status"))["job"]["status"] == "running"

        assert attempt is not None
        await sync_to_async(actions.record_progress)(
            job.id, attempt, 0.25, "int8-static: calibrating", ["calibrating on 200 samples"]
        )
        message = await receive(socket, "progress")
        assert message == {
            "type": "progress",
            "progress": 0.25,
            "stage": "int8-static: calibrating",
            "lines": ["calibrating on 200 samples"],
        }

        await sync_to_async(actions.request_cancel)(job)
        message = await receive(socket, "status")
        assert message["job"]["cancel_requested"] and message["job"]["status"] == "running"
    finally:
        await socket.disconnect()
        await listing.disconnect()


async def test_a_whole_job_streams_to_its_page(operator: Any, hub_files: dict[str, Path]) -> None:
    job = await sync_to_async(queued_job)(hub_files, operator)
    socket, connected = await open_socket(f"/ws/models/jobs/{job.id}/", operator)
    assert connected
    try:
        await sync_to_async(run_here)(job)
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1].get("job", {}).get("status") != "succeeded":
            seen.append(await socket.receive_json_from(timeout=10))
        progress = [m["progress"] for m in seen if m["type"] == "progress"]
        assert progress and progress == sorted(progress) and progress[-1] == 1.0
        lines = [line for m in seen if m["type"] == "progress" for line in m["lines"]]
        assert any("int8-static: measuring" in line for line in lines), lines
        statuses = [m["job"]["status"] for m in seen if m["type"] == "status"]
        assert statuses[0] == "running" and statuses[-1] == "succeeded"
        assert seen[-1]["job"]["variants"] == 1
    finally:
        await socket.disconnect()
