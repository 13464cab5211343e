"""The console in headless Chromium against a real uvicorn server: log in, create a token,
enroll a device with it, and watch the fleet page follow along without reloading.

With TRIAD_SCREENSHOT=path set, the test also fills the fleet with a dozen devices of every
tier and status and saves a screenshot of the fleet page there (docs/screenshot-fleet.png).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HARDWARE, ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery"
LIVE_TIMEOUT_MS = 5000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "controlplane.asgi:application"),
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            ],
            cwd=ROOT,
            env=subprocess_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not answer within 30 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser_page(server: str) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert not errors, f"JavaScript errors: {errors}"
        finally:
            browser.close()


def enroll(server: str, token: str, name: str, tier: str, state_dir: Path) -> tuple[str, str]:
    """Enroll like an operator would: with the agent's own command line when it is there."""
    if (ROOT / "edge_agent" / "cli.py").exists():
        done = subprocess.run(
            [
                *(sys.executable, "-m", "edge_agent", "enroll", "--server", server),
                *("--token", token, "--name", name, "--tier", tier, "--state-dir", str(state_dir)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        state = json.loads((state_dir / "agent.json").read_text())
        return state["device_id"], state["credential"]
    return enroll_over_http(server, token, name, tier)


def enroll_over_http(
    server: str, token: str, name: str, tier: str, **extra: Any
) -> tuple[str, str]:
    body = {"token": token, "name": name, "tier": tier, "hardware": HARDWARE, **extra}
    response = httpx.post(f"{server}/api/v1/agents/enroll/", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["device_id"], response.json()["credential"]


def heartbeat(server: str, credential: str, **sample: float) -> None:
    body = {"telemetry": [{"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **sample}]}
    response = httpx.post(
        f"{server}/api/v1/agents/heartbeat/",
        json=body,
        headers={"Authorization": f"Bearer {credential}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_fleet_follows_enrollment_and_heartbeats_live(
    operator: Any, server: str, browser_page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{server}/")
    assert "/login/" in page.url
    page.fill("#id_username", operator.username)
    page.fill("#id_password", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".alert-error")).to_contain_text("correct username and password")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")

    page.click("text=Enrollment tokens")
    page.fill("#id_name", "browser test")
    page.fill("#id_uses", "20")
    page.select_option("#id_expires", "1h")
    page.click("text=Create token")
    token = page.locator("#token-secret").inner_text().strip()
    assert token.startswith("tet_")
    expect(page.locator("#enroll-command")).to_contain_text(f"--server {server} --token {token}")

    page.click("nav >> text=Fleet")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    # Survives only as long as the page is not reloaded.
    page.evaluate("window.notReloaded = true")
    device_id, credential = enroll(server, token, "cam-live", "end", tmp_path / "agent")

    row = page.locator(f'#tier-end tr[data-device-id="{device_id}"]')
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".device-name")).to_have_text("cam-live")
    expect(row.locator('[data-field="status"]')).to_have_text("Pending")
    expect(page.locator('#counts [data-status="pending"] b')).to_have_text("1")

    heartbeat(server, credential, cpu_percent=42.5, memory_percent=30.0, power_w=4.0)
    expect(row.locator('[data-field="status"]')).to_have_text("Online", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".pill")).to_have_class("pill pill-online")
    expect(row.locator('[data-field="cpu_percent"]')).to_have_text("42.5 %")
    expect(page.locator('#counts [data-status="online"] b')).to_have_text("1")
    expect(page.locator('#counts [data-status="pending"] b')).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True

    # The device page draws the served plotly.js and extends its charts live.
    row.locator(".device-name").click()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.notReloaded = true")
    points = "document.getElementById('chart-util').data?.[0].x.length"
    page.wait_for_function(f"{points} === 1")
    heartbeat(server, credential, cpu_percent=77.0, memory_percent=31.0, power_w=5.5)
    expect(page.locator('.stats [data-field="cpu_percent"]')).to_have_text(
        "77.0 %", timeout=LIVE_TIMEOUT_MS
    )
    page.wait_for_function(f"{points} === 2")
    assert page.evaluate("window.notReloaded") is True

    screenshot = os.environ.get("TRIAD_SCREENSHOT")
    if screenshot:
        take_fleet_screenshot(page, server, token, Path(screenshot))


# --- the documentation screenshot ----------------------------------------------------------
FLEET = [
    # name, tier, (cpu %, memory %, power W) or a status without heartbeats, location
    ("gpu-a100-eu-1", "cloud", (63.0, 71.5, 412.0), "Frankfurt DC"),
    ("gpu-a100-eu-2", "cloud", (18.2, 44.0, 188.5), "Frankfurt DC"),
    ("cpu-batch-eu-1", "cloud", "retired", "Frankfurt DC"),
    ("mec-junction-4", "edge", (37.9, 52.3, 61.2), "Main St / 4th Ave"),
    ("mec-substation-2", "edge", (81.4, 66.0, 88.7), "North substation"),
    ("mec-depot", "edge", "offline", "Bus depot"),
    ("cam-4th-ave-n", "end", (22.5, 41.0, 6.4), "Main St / 4th Ave"),
    ("cam-4th-ave-s", "end", (27.1, 39.5, 6.9), "Main St / 4th Ave"),
    ("cam-harbour-gate", "end", (9.8, 35.2, 4.1), "Harbour gate"),
    ("cam-market-square", "end", (14.3, 38.0, 5.2), "Market square"),
    ("gateway-bridge", "end", "pending", "Bridge"),
]


def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ORM code off the main thread, where Playwright's event loop makes Django refuse it."""

    def call() -> Any:
        from django.db import connection

        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def take_fleet_screenshot(page: Any, server: str, token: str, path: Path) -> None:
    from django.utils import timezone

    from devices import actions
    from devices.models import Device

    page.goto(f"{server}/")
    for name, tier, state, location in FLEET:
        device_id, credential = enroll_over_http(server, token, name, tier, location=location)
        if isinstance(state, tuple):
            cpu, memory, power = state
            heartbeat(server, credential, cpu_percent=cpu, memory_percent=memory, power_w=power)
        elif state == "retired":
            in_thread(lambda pk: actions.retire_device(Device.objects.get(pk=pk)), device_id)
        elif state == "offline":
            # A heartbeat seven minutes ago, then the sweeper's pass.
            long_ago = timezone.now() - timedelta(minutes=7)
            in_thread(actions.record_heartbeat, device_id, [], now=long_ago)
            in_thread(actions.mark_overdue_devices_offline)
    page.wait_for_function("document.querySelectorAll('tr[data-device-id]').length === 12")
    page.wait_for_timeout(1500)  # let the update highlight fade
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
