"""Rollout WebSockets: the events `deployments.events` sends on commit reach the sockets of
a rollout's page and of the rollout list, and only operators and admins get them.

The changes are made through the actions (the agents' reports through the action behind
the agents' API), so the events travel as in production: through the SQLite channel
layer, or Redis when REDIS_URL is set.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from controlplane.asgi import application
from deployments import actions
from deployments.models import Deployment
from devices.models import Device
from tests.frontend.deployment_helpers import deploy, onnx_model, report, rollout_fleet
from tests.frontend.test_live import ORIGIN, open_socket, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(hub_media: Path) -> Path:
    return hub_media


@pytest.fixture(autouse=True)
def keys(signing_dir: Path) -> Path:
    return signing_dir


def started(folder: Path, user: Any) -> tuple[Deployment, dict[str, Device]]:
    """A rollout to two cameras: cam-1 the canary, cam-2 the batch."""
    devices = {device.name: device for device in rollout_fleet()}
    model = onnx_model(folder, user)
    deployment = deploy(model, [devices["cam-1"], devices["cam-2"]], user=user, canary_percent=50)
    return deployment, devices


async def receive(socket: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next message of this kind (a rollout's status may be announced more than once)."""
    while True:
        message: dict[str, Any] = await socket.receive_json_from(timeout=5)
        if message["type"] == kind:
            return message


@pytest.mark.parametrize("path", [f"/ws/deployments/{uuid.uuid4()}/", "/ws/deployments/"])
async def test_sockets_refuse_anonymous_and_role_less_users(nobody: Any, path: str) -> None:
    for user in (None, nobody):
        socket, connected = await open_socket(path, user)
        assert not connected
        await socket.disconnect()


async def test_a_role_less_user_is_closed_with_4403(nobody: Any) -> None:
    cookie = await sync_to_async(session_cookie)(nobody)
    socket = WebsocketCommunicator(application, "/ws/deployments/", headers=[ORIGIN, cookie])
    connected, code = await socket.connect(timeout=5)
    assert (connected, code) == (False, 4403)


async def test_a_rollout_page_and_the_list_follow_the_devices(
    operator: Any, admin_user: Any, tmp_path: Path
) -> None:
    deployment, devices = await sync_to_async(started)(tmp_path, operator)
    page, connected = await open_socket(f"/ws/deployments/{deployment.id}/", operator)
    listing, listed = await open_socket("/ws/deployments/", admin_user)
    assert connected and listed
    try:
        # Download progress: the device's row on the rollout's page, nothing on the list.
        await sync_to_async(report)(devices["cam-1"], "downloading", progress=0.25)
        message = await receive(page, "targets")
        [target] = message["targets"]
        assert (target["device"], target["device_name"]) == (str(devices["cam-1"].id), "cam-1")
        assert (target["state"], target["progress"], target["phase"]) == ("downloading", 0.25, 0)
        assert await listing.receive_nothing(timeout=0.3)

        # The canary settles: its row, then the rollout's status (the batch is released).
        await sync_to_async(report)(devices["cam-1"], "active")
        states: dict[str, str] = {}
        while states.get("cam-2") != "ordered":
            for target in (await receive(page, "targets"))["targets"]:
                states[target["device_name"]] = target["state"]
        assert states == {"cam-1": "active", "cam-2": "ordered"}
        for socket in (page, listing):
            summary = (await receive(socket, "status"))["deployment"]
            assert summary["id"] == str(deployment.id) and summary["status"] == "running"
            assert summary["phase"] == 1 and summary["phase_count"] == 2
            assert summary["counts"]["active"] == 1 and summary["counts"]["ordered"] == 1

        # A failure with its reason, and the automatic rollback it sets off.
        await sync_to_async(report)(
            devices["cam-2"], "failed", reason="hash_mismatch", detail="not the manifest's"
        )
        failed = (await receive(page, "targets"))["targets"][0]
        assert (failed["state"], failed["reason"]) == ("failed", "hash_mismatch")
        assert failed["detail"] == "not the manifest's"
        summary = (await receive(listing, "status"))["deployment"]
        assert (
            summary["status"] == "rolling_back"
            and "1 of 2 devices failed" in (summary["ended_reason"])
        )
    finally:
        await page.disconnect()
        await listing.disconnect()


async def test_pause_resume_and_abort_reach_the_page(operator: Any, tmp_path: Path) -> None:
    deployment, _ = await sync_to_async(started)(tmp_path, operator)
    page, connected = await open_socket(f"/ws/deployments/{deployment.id}/", operator)
    assert connected
    try:
        await sync_to_async(actions.pause_deployment)(deployment)
        assert (await receive(page, "status"))["deployment"]["status"] == "paused"
        await sync_to_async(actions.resume_deployment)(deployment)
        assert (await receive(page, "status"))["deployment"]["status"] == "running"
        await sync_to_async(actions.abort_deployment)(deployment, by=operator)
        summary = (await receive(page, "status"))["deployment"]
        assert summary["status"] == "rolling_back" and summary["ended_reason"] == "Aborted by op."
    finally:
        await page.disconnect()


async def test_a_page_hears_only_its_own_rollout(operator: Any, tmp_path: Path) -> None:
    deployment, devices = await sync_to_async(started)(tmp_path, operator)
    other, _ = await open_socket(f"/ws/deployments/{uuid.uuid4()}/", operator)
    try:
        await sync_to_async(report)(devices["cam-1"], "downloading", progress=0.5)
        await sync_to_async(actions.pause_deployment)(deployment)
        assert await other.receive_nothing(timeout=0.5)
    finally:
        await other.disconnect()
