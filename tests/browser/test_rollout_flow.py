"""A signed rollout in headless Chromium, against a real uvicorn server: an operator opens
an ONNX model in the model hub, follows its Deploy link, is refused a label selector that
matches no device, starts a rollout to three cameras instead, and watches it on the
rollout page while the devices' agents (played over the agents' REST API with the devices'
own credentials) download, verify, activate and fail; the operator pauses, resumes and
aborts it, and sees the devices roll back, all without reloading.

With TRIAD_ROLLOUT_SCREENSHOT=path set, the test also starts a rollout to eight devices in
mixed states and saves a screenshot of its page there (docs/screenshot-rollout.png).
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.actions import HardwareProfile, create_enrollment_token, enroll_device
from models_hub.models import ModelArtifact
from tests.browser.test_fleet_live import in_thread
from tests.browser.test_scheduling_flow import Session
from tests.conftest import HARDWARE
from tests.frontend.deployment_helpers import deploy, onnx_model
from tests.integration.processes import Server

pytestmark = pytest.mark.browser

LIVE_TIMEOUT_MS = 10_000
SCREENSHOT = os.environ.get("TRIAD_ROLLOUT_SCREENSHOT")
CAMERAS = ["cam-1", "cam-2", "cam-3"]
# name, tier, labels: the devices of the documentation screenshot's rollout.
SCREENSHOT_FLEET = [
    ("cam-4th-ave-n", "end", {"site": "junction-4"}),
    ("cam-4th-ave-s", "end", {"site": "junction-4"}),
    ("cam-harbour-gate", "end", {"site": "harbour"}),
    ("cam-market-square", "end", {"site": "market"}),
    ("cam-bridge-east", "end", {"site": "bridge"}),
    ("cam-bridge-west", "end", {"site": "bridge"}),
    ("mec-junction-4", "edge", {"site": "junction-4"}),
    ("mec-substation-2", "edge", {"site": "north"}),
]


class Agent:
    """A device's agent, as far as rollouts go: it reads its order from a heartbeat's answer
    and reports its model status, with the device's credential."""

    def __init__(self, server: Server, name: str, device_id: str, credential: str) -> None:
        self.name = name
        self.device_id = device_id
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {credential}"}, timeout=10
        )
        self.serving: dict[str, Any] | None = None

    def order(self) -> dict[str, Any]:
        response = self.client.post("/api/v1/agents/heartbeat/", json={"telemetry": []})
        assert response.status_code == 200, response.text
        order: dict[str, Any] | None = response.json()["desired_state"].get("model")
        assert order, f"{self.name} holds no order"
        return order

    def report(self, state: str, progress: float = 0.0, reason: str = "", detail: str = "") -> str:
        """Report on the current order; once active, the agent serves the order's artifact
        (none, for a rollback to nothing)."""
        order = self.order()
        signed = order["manifest"]["signed"]
        if state == "active":
            artifact = signed["artifact"]
            self.serving = (
                {"sha256": artifact["sha256"], "version": signed["version"]} if artifact else None
            )
        body = {
            "deployment_id": order["deployment_id"],
            "version": signed["version"],
            "state": state,
            "progress": progress,
            "reason": reason,
            "detail": detail,
            "active": self.serving,
        }
        response = self.client.post("/api/v1/agents/model-status/", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["state"])


def enroll(names: list[tuple[str, str, dict[str, str]]]) -> list[tuple[str, str, str]]:
    """Enroll devices through the action: (name, device id, credential) each."""
    _, secret = create_enrollment_token(
        created_by=None, max_uses=len(names), ttl=timedelta(hours=1)
    )
    enrolled = []
    for name, tier, labels in names:
        device, credential = enroll_device(
            token=secret, name=name, tier=tier, hardware=HardwareProfile(**HARDWARE), labels=labels
        )
        enrolled.append((name, str(device.id), credential))
    return enrolled


@pytest.fixture
def env(subprocess_env: dict[str, str], settings: Any, tmp_path: Path) -> dict[str, str]:
    """The server and this process share a MEDIA_ROOT and a signing key ring of this test's
    own: the model is registered here, and signed there."""
    media, signing = tmp_path / "media", tmp_path / "signing"
    media.mkdir()
    settings.MEDIA_ROOT = media
    settings.TRIAD_SIGNING_KEY_DIR = signing
    return {
        **subprocess_env,
        "TRIAD_MEDIA_ROOT": str(media),
        "TRIAD_SIGNING_KEY_DIR": str(signing),
    }


@pytest.fixture
def model(env: dict[str, str], operator: Any, tmp_path: Path) -> ModelArtifact:
    return onnx_model(tmp_path, operator, name="linear-classifier")


@pytest.fixture
def fleet(env: dict[str, str]) -> list[tuple[str, str, str]]:
    cameras = [(name, "end", {"site": "north"}) for name in CAMERAS]
    return enroll(cameras + (SCREENSHOT_FLEET if SCREENSHOT else []))


def test_start_watch_pause_resume_and_abort_a_rollout(
    operator: Any,
    model: ModelArtifact,
    fleet: list[tuple[str, str, str]],
    server: Server,
    browser: Any,
) -> None:
    from playwright.sync_api import expect

    agents = {name: Agent(server, name, device_id, key) for name, device_id, key in fleet}
    ops = Session(browser, server)
    page = ops.page
    frames: list[dict[str, Any]] = []
    page.on(
        "websocket",
        lambda socket: socket.on(
            "framereceived", lambda payload: frames.append(json.loads(payload))
        ),
    )
    ops.log_in("/deployments/", operator.username)
    expect(page.locator("#deployment-rows")).to_contain_text("No deployments yet")

    # --- from the model hub to the form, the model chosen -----------------------------
    page.goto(f"{server.url}/models/{model.id}/")
    page.click("#deploy-model")
    page.wait_for_url(f"{server.url}/deployments/new/?model={model.id}")
    expect(page.locator("#id_model")).to_have_value(str(model.id))
    expect(page.locator("#id_devices")).to_be_visible()
    expect(page.locator("#id_tier")).to_be_hidden()

    # A label selector that matches no device: refused on its field, nothing started.
    page.check("input[name=target_kind][value=labels]")
    expect(page.locator("#id_devices")).to_be_hidden()
    page.fill("#id_labels", "site=south")
    page.click("#start-deployment")
    expect(page.locator("#id_labels-error")).to_contain_text("These targets match no device.")
    expect(page.locator(".alert-error")).to_contain_text("No deployment was started")
    expect(page.locator("#id_labels")).to_be_visible()  # the kind chosen is kept

    # --- three cameras: the canary first, then one batch of two -------------------------
    page.check("input[name=target_kind][value=devices]")
    page.select_option("#id_devices", [agents[name].device_id for name in CAMERAS])
    page.fill("#id_name", "linear to the north cameras")
    page.fill("#id_canary_percent", "10")
    page.fill("#id_batch_percent", "100")
    page.fill("#id_max_failed_percent", "50")
    page.click("#start-deployment")
    page.wait_for_url(re.compile(r"/deployments/[0-9a-f-]{36}/$"))
    rollout_url = page.url
    expect(page.locator(".messages")).to_contain_text("canary released to 1 device")
    expect(page.locator("#deployment-status")).to_have_text("Running")
    expect(page.locator("#deployment-phase")).to_contain_text("1 of 2: canary")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.notReloaded = true")

    def row(name: str) -> Any:
        return page.locator(f'#target-rows tr[data-device="{name}"]')

    def state(name: str) -> Any:
        return row(name).locator("[data-field=state]")

    expect(state("cam-1")).to_have_text("Ordered")
    expect(state("cam-2")).to_have_text("Pending")

    # --- the canary downloads, verifies and activates; the batch is released -----------
    assert agents["cam-1"].report("downloading", progress=0.4) == "downloading"
    expect(state("cam-1")).to_have_text("Downloading", timeout=LIVE_TIMEOUT_MS)
    expect(row("cam-1").locator("[data-field=detail]")).to_have_text("40 %")
    expect(row("cam-1").locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "40")
    agents["cam-1"].report("verifying")
    expect(state("cam-1")).to_have_text("Verifying", timeout=LIVE_TIMEOUT_MS)
    agents["cam-1"].report("active")
    expect(state("cam-1")).to_have_text("Active", timeout=LIVE_TIMEOUT_MS)
    expect(state("cam-2")).to_have_text("Ordered", timeout=LIVE_TIMEOUT_MS)
    expect(state("cam-3")).to_have_text("Ordered")
    expect(page.locator("#deployment-phase")).to_contain_text("2 of 2: batch 1")
    expect(page.locator('#phases tr[data-phase="0"]')).to_contain_text("1 of 1")
    expect(page.locator("#stat-active")).to_have_text("1")
    assert page.evaluate("window.notReloaded") is True
    targets = [t for frame in frames if frame["type"] == "targets" for t in frame["targets"]]
    assert [t["progress"] for t in targets if t["state"] == "downloading"] == [0.4]

    # --- pause; a device fails meanwhile (within the threshold) ------------------------
    page.click("#pause-deployment")
    expect(page.locator(".messages")).to_contain_text("The rollout is paused")
    expect(page.locator("#deployment-status")).to_have_text("Paused")
    expect(page.locator("#pause-deployment")).to_have_count(0)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    agents["cam-2"].report(
        "failed", reason="hash_mismatch", detail="The bytes' SHA-256 is not the manifest's."
    )
    expect(state("cam-2")).to_have_text("Failed", timeout=LIVE_TIMEOUT_MS)
    expect(row("cam-2").locator("[data-field=detail]")).to_have_text(
        "hash_mismatch The bytes' SHA-256 is not the manifest's."
    )
    expect(page.locator("#stat-failed")).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#deployment-status")).to_have_text("Paused")

    # --- resume; the last camera downloads ------------------------------------------------
    page.click("#resume-deployment")
    expect(page.locator(".messages")).to_contain_text("The rollout is running again.")
    expect(page.locator("#deployment-status")).to_have_text("Running")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    agents["cam-3"].report("downloading", progress=0.7)
    expect(row("cam-3").locator("[data-field=detail]")).to_have_text(
        "70 %", timeout=LIVE_TIMEOUT_MS
    )

    # --- abort: the released devices roll back -------------------------------------------
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#abort-deployment")
    expect(page.locator(".messages")).to_contain_text("The rollout is aborted")
    expect(page.locator("#deployment-status")).to_have_text("Rolling back")
    expect(page.locator("#ended-reason")).to_contain_text(f"Aborted by {operator.username}.")
    expect(page.locator("#abort-deployment")).to_have_count(0)
    expect(state("cam-1")).to_have_text("Rolling back")
    expect(state("cam-3")).to_have_text("Rolling back")
    expect(state("cam-2")).to_have_text("Failed")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.notReloaded = true")
    assert agents["cam-1"].report("active") == "rolled_back"
    expect(state("cam-1")).to_have_text("Rolled back", timeout=LIVE_TIMEOUT_MS)
    agents["cam-3"].report("active")
    expect(state("cam-3")).to_have_text("Rolled back", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#deployment-status")).to_have_text("Rolled back", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#ended-reason")).to_contain_text("Rolled back.")
    assert page.evaluate("window.notReloaded") is True

    # --- the list and a device's history ---------------------------------------------------
    page.click("nav >> text=Deployments")
    listed = page.locator("#deployment-rows tr[data-deployment-id]")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("Rolled back")
    expect(listed.locator(".state-bar")).to_have_attribute("aria-label", "2 rolled back, 1 failed")
    page.goto(f"{server.url}/devices/{agents['cam-2'].device_id}/")
    history = page.locator("#device-rollouts")
    expect(history).to_contain_text("linear to the north cameras")
    expect(history).to_contain_text("hash_mismatch")
    history.locator("a", has_text="linear to the north cameras").click()
    page.wait_for_url(rollout_url)

    if SCREENSHOT:
        take_rollout_screenshot(page, server, model, operator, agents, Path(SCREENSHOT))
    assert not ops.errors, f"JavaScript errors: {ops.errors}"


# --- the documentation screenshot ----------------------------------------------------------
def take_rollout_screenshot(
    page: Any,
    server: Server,
    model: ModelArtifact,
    operator: Any,
    agents: dict[str, Agent],
    path: Path,
) -> None:
    """Eight devices: the canary (two) active; in the first batch one active, one
    downloading, one verifying, one failed its health check; the last batch pending."""
    from playwright.sync_api import expect

    from devices.models import Device

    names = [name for name, _, _ in SCREENSHOT_FLEET]
    devices = in_thread(lambda: list(Device.objects.filter(name__in=names)))
    deployment = in_thread(
        deploy,
        model,
        devices,
        user=operator,
        name="linear-classifier 1 to the junction cameras",
        canary_percent=25,
        batch_percent=50,
        max_failed_percent=25,
        latency_budget_ms=25.0,
        device_timeout_s=900,
    )
    page.goto(f"{server.url}/deployments/{deployment.id}/")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    # Release order is by name: the canary is cam-4th-ave-n and cam-4th-ave-s.
    for name in ("cam-4th-ave-n", "cam-4th-ave-s"):
        agents[name].report("active")
    agents["cam-bridge-east"].report("active")
    agents["cam-bridge-west"].report("downloading", progress=0.63)
    agents["cam-harbour-gate"].report("verifying")
    agents["cam-market-square"].report(
        "failed",
        reason="health_check_failed",
        detail="The probe's p50 of 38.2 ms is over the latency budget of 25 ms.",
    )
    expect(page.locator('#target-rows tr[data-device="cam-market-square"]')).to_contain_text(
        "health_check_failed", timeout=LIVE_TIMEOUT_MS
    )
    expect(page.locator("#stat-active")).to_have_text("3", timeout=LIVE_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # let the update highlight fade
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
