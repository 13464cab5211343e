"""From a model file to compared variants in headless Chromium, against a real uvicorn server
and a real Celery worker: an operator registers a small torch model (after a refused try
without its input shape), uploads its calibration and evaluation data, starts a
prune-distill:0.5+int8-static job from the model's page, watches its progress and log
arrive live, and compares the variants: the table, the accuracy-latency scatter with the
Pareto-optimal variants highlighted, the size bars, and a download.

With TRIAD_COMPRESSION_SCREENSHOT=path set, the test also saves a screenshot of the finished
job's page there (docs/screenshot-compression.png). The model is then the digits teacher that
`python -m models_hub task digits` trains (98 % accurate, 20 s), fine-tuned for 3 epochs
after pruning, so that the figures shown are a real model's; otherwise it is the tiny CNN
the other model hub tests use, fine-tuned for 1 epoch: this test checks the flow, not the
figures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.models import Device
from tests.browser.test_scheduling_flow import Session
from tests.conftest import ROOT
from tests.frontend.hub_helpers import hub_files
from tests.frontend.scheduling_helpers import DeviceProfile, make_fleet
from tests.integration.processes import Processes, Server

pytestmark = pytest.mark.browser

# The device classes the variants' latency and energy are estimated for.
FLEET: list[DeviceProfile] = [
    ("gpu-cloud-1", "cloud", 2000.0, 65536, 120.0, 350.0, 2.5),
    ("mec-junction-4", "edge", 250.0, 16384, 30.0, 90.0, 0.3),
    ("cam-4th-ave-n", "end", 12.0, 4096, 2.0, 7.0, 0.0),
    ("cam-4th-ave-s", "end", 12.0, 4096, 2.0, 7.0, 0.0),
]
RECIPE = "prune-distill:0.5+int8-static"
VARIANTS = ["original", "prune-distill:0.5", "prune-distill:0.5+int8-static"]
# Bounds a hang; a loaded 2-core machine needs seconds to start the worker.
JOB_TIMEOUT_MS = 120_000
SCREENSHOT = os.environ.get("TRIAD_COMPRESSION_SCREENSHOT")
EPOCHS = 3 if SCREENSHOT else 1


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not SCREENSHOT:
        return hub_files(tmp_path_factory)
    folder = tmp_path_factory.mktemp("digits-task")
    subprocess.run(
        [sys.executable, "-m", "models_hub", "task", "digits", "--out", str(folder)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {path.name: path for path in folder.iterdir()}


def samples(path: Path) -> int:
    with np.load(path) as data:
        return len(data["x"])


@pytest.fixture
def env(subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The server and the worker share a MEDIA_ROOT of this test's own."""
    media = tmp_path / "media"
    media.mkdir()
    return {**subprocess_env, "TRIAD_MEDIA_ROOT": str(media)}


@pytest.fixture
def fleet(transactional_db: Any) -> list[Device]:
    return make_fleet(FLEET)


def chart(chart_id: str) -> str:
    return f"document.getElementById('{chart_id}')"


def test_from_a_model_file_to_compared_variants(
    operator: Any,
    fleet: list[Device],
    files: dict[str, Path],
    env: dict[str, str],
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
    ops.log_in("/models/", operator.username)
    expect(page.locator("#models")).to_contain_text("No models yet")

    # --- register the model: refused without its input shape, then stored ---------------
    page.set_input_files("#id_file", str(files["model.pt"]))
    page.fill("#id_name", "digits-cnn")
    page.fill("#id_task", "digits")
    page.click("#upload-model")
    expect(page.locator("#id_input_shape-error")).to_contain_text("shape of one input sample")
    expect(page.locator(".alert-error")).to_contain_text("No model was registered")
    page.set_input_files("#id_file", str(files["model.pt"]))  # a file input is never kept
    page.fill("#id_input_shape", "1, 16, 16")
    page.click("#upload-model")
    page.wait_for_url(re.compile(r"/models/[0-9a-f-]{36}/$"))
    model_url = page.url
    expect(page.locator(".messages")).to_contain_text("digits-cnn 1 registered")
    expect(page.locator("#signature")).to_contain_text("[?, 1, 16, 16]")
    expect(page.locator("#no-datasets")).to_contain_text("there are none yet")

    # --- its data -----------------------------------------------------------------------
    page.click("nav >> text=Data sets")
    labels = {}
    for name, purpose in (("calib.npz", "calibration"), ("eval.npz", "evaluation")):
        page.set_input_files("#id_file", str(files[name]))
        page.fill("#id_name", f"digits-{purpose}")
        page.select_option("#id_purpose", purpose)
        page.click("#upload-dataset")
        count = samples(files[name])
        expect(page.locator(".messages")).to_contain_text(f"digits-{purpose}” stored: {count}")
        labels[purpose] = f"digits-{purpose} ({purpose}, {count} samples, labelled)"
    expect(page.locator("#datasets tbody tr")).to_have_count(2)

    # --- a job from the model's page ------------------------------------------------------
    page.click("nav >> text=Models")
    page.click("#models a.strong")  # the only version
    page.wait_for_url(model_url)
    expect(page.locator("#id_epochs")).to_be_hidden()  # int8-static reads no epochs
    page.click(f"#compress-form [data-recipe='{RECIPE}']")
    expect(page.locator("#id_recipe")).to_have_value(RECIPE)
    expect(page.locator("#id_epochs")).to_be_visible()
    expect(page.locator("#id_temperature")).to_be_visible()
    page.fill("#id_epochs", str(EPOCHS))
    page.select_option("#id_calibration", label=labels["calibration"])
    page.select_option("#id_evaluation", label=labels["evaluation"])
    page.click("#submit-job")
    page.wait_for_url(re.compile(r"/models/jobs/[0-9a-f-]{36}/$"))
    job_url = page.url
    expect(page.locator(".messages")).to_contain_text(f"Compression job queued: {RECIPE}")
    expect(page.locator("#job-status")).to_have_text("Queued")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.notReloaded = true")

    # The worker starts only now, so the whole run happens while the page watches.
    worker = processes.worker(env)
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.notReloaded") is True
    progress = [frame for frame in frames if frame["type"] == "progress"]
    assert progress, f"no progress event reached the page: {frames}"
    assert any("epoch 1," in line for frame in progress for line in frame["lines"]), progress
    statuses = [frame["job"]["status"] for frame in frames if frame["type"] == "status"]
    assert "running" in statuses and statuses[-1] == "succeeded", statuses
    expect(page.locator("#job-progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#job-log")).to_contain_text("prune-distill:0.5: epoch 1")
    expect(page.locator("#job-log")).to_contain_text("succeeded: 2 variant(s) stored")

    # --- the comparison, swapped in when the job succeeded -------------------------------
    table = page.locator("#comparison-table")
    rows = table.locator("tbody[data-variant]")
    expect(rows).to_have_count(len(VARIANTS))
    assert [rows.nth(i).get_attribute("data-variant") for i in range(len(VARIANTS))] == VARIANTS
    data = json.loads(page.locator("#comparison-data").text_content() or "{}")
    pareto = [row["name"] for row in data["rows"] if row["pareto"]]
    assert pareto, data
    expect(table.locator("tbody.pareto")).to_have_count(len(pareto))
    expect(page.locator("#device-table")).to_contain_text("edge (mec-junction-4)")

    page.wait_for_function(f"{chart('scatter-chart')}?.data?.length === 3")
    traces = page.evaluate(
        f"{chart('scatter-chart')}.data.map((t) => ({{name: t.name, text: t.text ?? null, "
        "color: t.marker?.color ?? null, x: t.x}))"
    )
    by_name = {trace["name"]: trace for trace in traces}
    assert set(by_name) == {"Pareto front", "Pareto-optimal", "Dominated"}
    assert sorted(by_name["Pareto-optimal"]["text"]) == sorted(pareto)
    assert sorted(by_name["Dominated"]["text"]) == sorted(set(VARIANTS) - set(pareto))
    assert by_name["Pareto-optimal"]["color"] != by_name["Dominated"]["color"]
    assert len(by_name["Pareto front"]["x"]) == len(pareto)
    page.wait_for_function(f"{chart('size-chart')}?.data?.[0]?.y?.length === 3")
    assert page.evaluate(f"{chart('size-chart')}.data[0].y") == VARIANTS

    # --- a download ---------------------------------------------------------------------
    with page.expect_download() as download:
        table.locator(f"[data-download='{VARIANTS[-1]}']").click()
    assert download.value.suggested_filename == "prune-distill-0.5_int8-static.onnx"

    if SCREENSHOT:
        take_job_screenshot(page, job_url, Path(SCREENSHOT))

    # Let the worker finish its task before teardown kills it (acks_late would requeue it).
    processes.wait_until(
        lambda: re.search(r"run_compression_job\[[0-9a-f-]+\] succeeded in [\d.]+s: 'succeeded'",
                          worker.log()),
        "the worker to finish the job's task",
    )  # fmt: skip
    assert not ops.errors, f"JavaScript errors: {ops.errors}"


def take_job_screenshot(page: Any, job_url: str, path: Path) -> None:
    """The finished job's page: its summary, log, and the comparison with both charts."""
    page.goto(job_url)
    page.wait_for_function(f"{chart('scatter-chart')}?.data?.length > 0")
    page.wait_for_function(f"{chart('size-chart')}?.data?.length > 0")
    page.wait_for_timeout(500)  # plotly's transitions
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
