"""Hardware-in-the-loop profiling on the model page: the form that asks agents to time the
model or a variant (bad input names its field and asks no device), and the measurements
the agents sent, the newest per device."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from deployments import actions
from deployments.actions import ProfileReport
from deployments.models import ProfilingRun
from devices.models import Device
from tests.frontend.deployment_helpers import onnx_model, rollout_fleet, variant_of
from tests.frontend.pages import logged_in


@pytest.fixture(autouse=True)
def media(hub_media: Path) -> Path:
    return hub_media


@pytest.fixture(autouse=True)
def keys(signing_dir: Path) -> Path:
    return signing_dir


def profile_errors(html: str, name: str) -> list[str]:
    found = re.findall(rf'<p class="field-error" id="profile_{name}-error">(.*?)</p>', html, re.S)
    return [unescape(error) for error in found]


def test_an_operator_asks_devices_to_time_a_variant(operator: Any, tmp_path: Path) -> None:
    model = onnx_model(tmp_path, operator)
    variant = variant_of(model, tmp_path)
    cam1, cam2, *_ = rollout_fleet()
    page = logged_in(operator).post(
        f"/models/{model.pk}/profile/",
        {"variant": str(variant.pk), "devices": [str(cam1.pk), str(cam2.pk)], "runs": "20"},
    )
    assert page.status_code == 302 and page["Location"].endswith("#measured")
    run = ProfilingRun.objects.get()
    assert (run.variant, run.runs, run.targets.count()) == (variant, 20, 2)
    order = Device.objects.get(pk=cam1.pk).desired_profile
    assert order is not None and order["run_id"] == str(run.pk)
    html = logged_in(operator).get(f"/models/{model.pk}/").content.decode()
    assert "2 devices still timing" in html


@pytest.mark.parametrize(
    ("change", "field"),
    [({"devices": []}, "devices"), ({"runs": "0"}, "runs"), ({"variant": "nope"}, "variant")],
)
def test_bad_profiling_input_names_the_field_and_asks_nobody(
    operator: Any, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    model = onnx_model(tmp_path, operator)
    cam1, *_ = rollout_fleet()
    body = {"variant": "", "devices": [str(cam1.pk)], "runs": "10", **change}
    page = logged_in(operator).post(f"/models/{model.pk}/profile/", body)
    assert page.status_code == 400
    assert profile_errors(page.content.decode(), field)
    assert not ProfilingRun.objects.exists()


def test_a_device_already_timing_is_refused_on_the_devices_field(
    operator: Any, tmp_path: Path
) -> None:
    model = onnx_model(tmp_path, operator)
    cam1, *_ = rollout_fleet()
    body = {"variant": "", "devices": [str(cam1.pk)], "runs": "10"}
    logged_in(operator).post(f"/models/{model.pk}/profile/", body)
    page = logged_in(operator).post(f"/models/{model.pk}/profile/", body)
    assert page.status_code == 400
    assert "Already profiling" in " ".join(profile_errors(page.content.decode(), "devices"))
    assert ProfilingRun.objects.count() == 1


def test_the_page_shows_the_newest_measurement_per_device(operator: Any, tmp_path: Path) -> None:
    model = onnx_model(tmp_path, operator)
    cam1, *_ = rollout_fleet()
    for p50 in (9.0, 4.25):
        run = actions.start_profiling(model=model, variant=None, devices=[cam1.pk], created_by=None)
        actions.record_profile_result(
            cam1, ProfileReport(run.pk, "measured", p50_ms=p50, p95_ms=p50 + 1, runs=50)
        )
    html = logged_in(operator).get(f"/models/{model.pk}/").content.decode()
    table = html[html.index('id="latency-table"') :]
    assert table.count('data-device="cam-1"') == 1
    assert "4.25 ms" in table and "9.00 ms" not in table
