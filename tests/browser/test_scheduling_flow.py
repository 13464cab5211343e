"""From a workload to an approved decision in headless Chromium, against a real uvicorn
server and a real Celery worker: an operator builds the video pipeline for two cameras,
submits a job, watches it converge live and finish, picks a solution of the front, sees its
Gantt chart and proposes it; an admin approves it in the review queue; the operator's page
shows the approval without a reload.

With TRIAD_SCHEDULING_SCREENSHOT=path set, the test also saves a screenshot of the finished
job's page there (docs/screenshot-scheduling.png).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from devices.models import Device
from tests.browser.test_fleet_live import PASSWORD
from tests.frontend.scheduling_helpers import DeviceProfile, make_fleet
from tests.integration.processes import Processes, Server

pytestmark = pytest.mark.browser

FLEET: list[DeviceProfile] = [
    ("gpu-cloud-1", "cloud", 2000.0, 65536, 120.0, 350.0, 2.5),
    ("mec-junction-4", "edge", 250.0, 16384, 30.0, 90.0, 0.3),
    ("mec-substation-2", "edge", 180.0, 8192, 25.0, 70.0, 0.2),
    ("cam-4th-ave-n", "end", 12.0, 4096, 2.0, 7.0, 0.0),
    ("cam-4th-ave-s", "end", 10.0, 4096, 2.0, 6.5, 0.0),
    ("cam-harbour-gate", "end", 8.0, 2048, 1.5, 5.0, 0.0),
]
GENERATIONS = 40
POPULATION = 16
# Bounds a hang; a loaded 2-core machine needs seconds to start the worker.
JOB_TIMEOUT_MS = 90_000
TIMES = "\N{MULTIPLICATION SIGN}"
LIVE_TIMEOUT_MS = 10_000


@pytest.fixture
def fleet(transactional_db: Any) -> list[Device]:
    return make_fleet(FLEET)


class Session:
    """A user's own browser context and page; JavaScript errors fail the test."""

    def __init__(self, browser: Any, server: Server) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def log_in(self, path: str, username: str) -> None:
        page = self.page
        page.goto(f"{self.server.url}{path}")
        assert "/login/" in page.url
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.server.url}{path}")


def chart_points(chart_id: str) -> str:
    return f"document.getElementById('{chart_id}')?.data?.[0]?.x?.length ?? 0"


def test_from_a_workload_to_an_approved_decision(
    operator: Any,
    admin_user: Any,
    fleet: list[Device],
    subprocess_env: dict[str, str],
    processes: Processes,
    server: Server,
    browser: Any,
) -> None:
    from playwright.sync_api import expect

    ops = Session(browser, server)
    page = ops.page
    frames: list[dict[str, Any]] = []
    page.on(
        "websocket",
        lambda socket: socket.on(
            "framereceived", lambda payload: frames.append(json.loads(payload))
        ),
    )
    ops.log_in("/scheduling/workloads/", operator.username)

    # --- a workload from the video-pipeline template, two cameras -------------------------
    page.fill("#id_name", "junction 4")
    page.select_option("#id_template", "video-pipeline")
    expect(page.locator("#id_tasks")).to_be_hidden()
    page.fill("#id_cameras", "2")
    page.click("text=Build workload")
    page.wait_for_url(re.compile(r"/scheduling/workloads/[0-9a-f-]{36}/$"))
    expect(page.locator(".messages")).to_contain_text("stored: 10 tasks")
    expect(page.locator("#graph-summary")).to_contain_text("6 levels")

    # --- a job on the online fleet, with three objectives --------------------------
    page.check("input[name=objectives][value=cost]")
    page.fill("#id_generations", str(GENERATIONS))
    page.fill("#id_population", str(POPULATION))
    page.click("text=Submit job")
    page.wait_for_url(re.compile(r"/scheduling/jobs/[0-9a-f-]{36}/$"))
    job_url = page.url
    expect(page.locator(".messages")).to_contain_text(f"a fleet of {len(FLEET)} online devices")
    expect(page.locator("#job-status")).to_have_text("Queued")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.notReloaded = true")

    # The worker starts only now, so the whole run happens while the page watches.
    worker = processes.worker(subprocess_env)
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function(f"{chart_points('chart-hypervolume')} === {GENERATIONS}")
    page.wait_for_function(f"{chart_points('chart-cost')} === {GENERATIONS}")
    assert page.evaluate("window.notReloaded") is True
    progress = [frame for frame in frames if frame["type"] == "progress"]
    assert progress, f"no progress event reached the page: {frames}"
    statuses = [frame["job"]["status"] for frame in frames if frame["type"] == "status"]
    assert statuses[-1] == "succeeded" and "running" in statuses
    expect(page.locator("#stat-generation")).to_have_text(f"{GENERATIONS} / {GENERATIONS}")

    # --- the result, loaded when the job succeeded ---------------------------------------
    page.wait_for_function("document.getElementById('front-chart')?.data?.length > 0")
    front_chart = "document.getElementById('front-chart').data"
    assert page.evaluate(f"{front_chart}[0].type") == "scatter3d"
    names = page.evaluate(f"{front_chart}.map((trace) => trace.name)")
    assert {"Pareto front", "Knee", "HEFT", "All on cloud", "Lower bounds"} <= set(names)
    page.click("#front-views >> text=Parallel coordinates")
    page.wait_for_function(f"{front_chart}[0].type === 'parcoords'")
    page.click("#front-views >> text=3D scatter")
    page.wait_for_function(f"{front_chart}[0].type === 'scatter3d'")
    expect(page.locator("#baseline-table")).to_contain_text("HEFT")
    expect(page.locator("#lower-bounds")).to_contain_text("Makespan (s)")
    expect(page.locator("#solution-title")).to_contain_text("(knee)")

    # --- pick the front's fastest solution: its Gantt chart and comparisons ----------------
    first = page.locator("#front-table tbody tr").first
    first.click()
    expect(page.locator("#solution-title")).to_have_text(re.compile(r"^Front #0"))
    expect(first).to_have_attribute("aria-selected", "true")
    gantt = "document.getElementById('gantt').data"
    page.wait_for_function(f"{gantt}?.some((t) => t.type === 'bar' && t.name === 'decode')")
    rows = page.evaluate("[...new Set(document.getElementById('gantt').data.flatMap((t) => t.y))]")
    assert set(rows) <= {name for name, *_ in FLEET} and rows, rows
    tasks = page.evaluate("document.getElementById('gantt').data.flatMap((t) => t.text)")
    assert sorted(tasks) == sorted(
        [f"{kind}-{i}" for kind in ("decode", "detect", "track", "reid") for i in (0, 1)]
        + ["aggregate", "alert"]
    )
    comparison = page.locator("#comparison")
    expect(comparison).to_contain_text("Baseline HEFT")
    expect(comparison).to_contain_text("Lower bounds")
    expect(comparison.locator(".ratio").first).to_have_text(re.compile(f"^{TIMES}" + r"\d+\.\d\d$"))
    assert "?solution=" in page.url

    # --- propose it ------------------------------------------------------------------------
    page.fill("#id_comment", "fastest; the cameras only decode")
    page.click("#propose-button")
    expect(page.locator(".messages")).to_contain_text("is proposed")
    proposed = page.locator("#decisions tbody tr").first
    expect(proposed).to_have_attribute("data-status", "proposed")
    expect(proposed).to_contain_text("Front #0")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.notReloaded = true")

    # --- an admin approves it in the review queue ----------------------------------------
    boss = Session(browser, server)
    boss.log_in("/scheduling/decisions/", admin_user.username)
    pending = boss.page.locator("#pending tbody tr").first
    expect(pending).to_contain_text("junction 4")
    expect(pending).to_contain_text("fastest; the cameras only decode")
    pending.locator("textarea").fill("approved for junction 4")
    pending.locator("text=Approve").click()
    expect(boss.page.locator(".messages")).to_contain_text("is approved")
    expect(boss.page.locator("#pending")).to_contain_text("Nothing waits for review.")
    reviewed = boss.page.locator("#reviewed tbody tr").first
    expect(reviewed).to_have_attribute("data-status", "approved")
    expect(reviewed).to_contain_text("approved for junction 4")

    # The operator's job page shows the verdict live.
    approved = page.locator("#decisions tbody tr").first
    expect(approved).to_have_attribute("data-status", "approved", timeout=LIVE_TIMEOUT_MS)
    expect(approved).to_contain_text("approved for junction 4")
    expect(approved).to_contain_text(admin_user.username)
    assert page.evaluate("window.notReloaded") is True

    screenshot = os.environ.get("TRIAD_SCHEDULING_SCREENSHOT")
    if screenshot:
        take_job_screenshot(page, job_url, Path(screenshot))

    # Let the worker finish its task before teardown kills it (acks_late would requeue it).
    processes.wait_until(
        lambda: re.search(r"run_scheduling_job\[[0-9a-f-]+\] succeeded", worker.log()),
        "the worker to finish the job's task",
    )
    assert not ops.errors and not boss.errors, f"JavaScript errors: {ops.errors + boss.errors}"


def take_job_screenshot(page: Any, job_url: str, path: Path) -> None:
    """The finished job's page, opened on the knee: front, tables and Gantt chart."""
    page.goto(job_url)
    page.wait_for_function("document.getElementById('gantt')?.data?.length > 0")
    page.wait_for_function("document.getElementById('front-chart')?.data?.length > 0")
    page.wait_for_timeout(500)  # plotly's transitions
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
