"""Rollout pages with the Django test client: roles, the list, the form (each kind of
targets; bad input names its field and creates nothing), the rollout page with devices in
every state, Pause, Resume and Abort (and their conflicts), the device page's model and
rollout history, and the model hub's Deploy links."""

from __future__ import annotations

import re
import uuid
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from deployments.models import (
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    SignedManifest,
    TargetState,
)
from devices.models import Device
from frontend import forms as console_forms
from models_hub.models import ModelArtifact, Variant
from scheduling import actions as scheduling
from scheduling.models import Decision, JobStatus, Solution, SolutionKind
from scheduling.tasks import run_scheduling_job
from tests.frontend.deployment_helpers import (
    deploy,
    onnx_model,
    report,
    rollout_fleet,
    variant_of,
)
from tests.frontend.pages import PageRoleTests, logged_in
from tests.frontend.scheduling_helpers import SMALL_RUN


def field_errors(html: str, name: str) -> list[str]:
    """The errors shown next to form field `name` (frontend/_field.html marks them)."""
    found = re.findall(rf'<p class="field-error" id="id_{name}-error">(.*?)</p>', html, re.S)
    return [unescape(error) for error in found]


def section(html: str, element_id: str) -> str:
    """The element with this id, up to its own closing tag (nested ones of its kind too)."""
    start = re.search(rf'<(\w+)[^>]* id="{element_id}"', html)
    assert start, f"no #{element_id} in the page"
    tag = start.group(1)
    depth = 0
    for found in re.finditer(rf"<(/?){tag}\b[^>]*>", html[start.start() :]):
        depth += -1 if found.group(1) else 1
        if depth == 0:
            return html[start.start() : start.start() + found.end()]
    raise AssertionError(f"#{element_id} is not closed")


def target_row(html: str, device: Device) -> str:
    match = re.search(rf'<tr id="target-\d+"[^>]* data-device="{device.name}".*?</tr>', html, re.S)
    assert match, f"no row for {device.name}"
    return match.group(0)


@pytest.fixture(autouse=True)
def media(hub_media: Path) -> Path:
    return hub_media


@pytest.fixture(autouse=True)
def keys(signing_dir: Path) -> Path:
    return signing_dir


@pytest.fixture
def fleet(db: Any) -> list[Device]:
    return rollout_fleet()


@pytest.fixture
def devices(fleet: list[Device]) -> dict[str, Device]:
    return {device.name: device for device in fleet}


@pytest.fixture
def model(operator: Any, tmp_path: Path) -> ModelArtifact:
    return onnx_model(tmp_path, operator)


@pytest.fixture
def variant(model: ModelArtifact, tmp_path: Path) -> Variant:
    return variant_of(model, tmp_path)


@pytest.fixture
def rollout(model: ModelArtifact, fleet: list[Device], operator: Any) -> Deployment:
    """Canary cam-1 (ordered), then batches of two: pending."""
    cameras = [device for device in fleet if device.tier == "end"]
    return deploy(model, cameras, user=operator, canary_percent=25, batch_percent=50)


@pytest.fixture
def urls(rollout: Deployment) -> dict[str, str]:
    return {
        "list": "/deployments/",
        "new": "/deployments/new/",
        "rollout": f"/deployments/{rollout.id}/",
        "pause": f"/deployments/{rollout.id}/pause/",
        "resume": f"/deployments/{rollout.id}/resume/",
        "abort": f"/deployments/{rollout.id}/abort/",
    }


PAGES = ["list", "new", "rollout"]
ACTIONS = ["pause", "resume", "abort"]


def form_data(**fields: Any) -> dict[str, Any]:
    """The form as a browser sends it with the defaults; `fields` override them."""
    data = {
        "name": "",
        "model": "",
        "variant": "",
        "target_kind": "devices",
        "devices": [],
        "tier": "",
        "labels": "",
        "decision": "",
        "tasks": "",
        "canary_percent": "10",
        "batch_percent": "50",
        "max_failed_percent": "0",
        "device_timeout_s": "600",
        "latency_budget_ms": "",
    }
    data.update(fields)
    return data


# --- roles -------------------------------------------------------------------------------
class TestDeploymentPageRoles(PageRoleTests):
    pages = PAGES + ACTIONS


@pytest.mark.parametrize("page", PAGES)
def test_operators_and_admins_see_every_page_with_the_nav(
    operator: Any, admin_user: Any, urls: dict[str, str], page: str
) -> None:
    for user in (operator, admin_user):
        response = logged_in(user).get(urls[page])
        assert response.status_code == 200
        body = response.content.decode()
        assert '<a href="/deployments/" aria-current="page">Deployments</a>' in body


def test_role_less_users_cannot_write(
    nobody: Any, rollout: Deployment, model: ModelArtifact, devices: dict[str, Device]
) -> None:
    client = logged_in(nobody)
    data = form_data(model=str(model.id), devices=[str(devices["mec-1"].id)])
    assert client.post("/deployments/new/", data).status_code == 403
    for action in ACTIONS:
        assert client.post(f"/deployments/{rollout.id}/{action}/").status_code == 403
    assert Deployment.objects.count() == 1
    rollout.refresh_from_db()
    assert rollout.status == DeploymentStatus.RUNNING


def test_actions_need_post(operator: Any, urls: dict[str, str]) -> None:
    client = logged_in(operator)
    for action in ACTIONS:
        assert client.get(urls[action]).status_code == 405


def test_unknown_deployments_are_404(operator: Any, db: Any) -> None:
    client = logged_in(operator)
    nowhere = uuid.uuid4()
    assert client.get(f"/deployments/{nowhere}/").status_code == 404
    for action in ACTIONS:
        assert client.post(f"/deployments/{nowhere}/{action}/").status_code == 404


# --- the list ----------------------------------------------------------------------------
def test_the_list_shows_each_rollout_with_its_counts(
    operator: Any, rollout: Deployment, devices: dict[str, Device]
) -> None:
    client = logged_in(operator)
    report(devices["cam-1"], "downloading", progress=0.5)
    html = client.get("/deployments/").content.decode()
    row = re.search(rf'<tr data-deployment-id="{rollout.id}".*?</tr>', html, re.S)
    assert row, html
    text = row.group(0)
    assert f'href="/deployments/{rollout.id}/"' in text and rollout.name in text
    assert "linear" in text and "Running" in text
    assert re.search(r'<td class="phase">\s*1 of 3\s*</td>', text)
    assert 'aria-label="1 downloading, 3 pending"' in text
    assert 'class="state-downloading" style="width: 25.00%"' in text
    assert 'class="state-pending" style="width: 75.00%"' in text
    assert "by op" in text
    assert 'data-live-path="/ws/deployments/"' in html
    assert 'href="/deployments/new/"' in html


def test_an_empty_list_says_where_to_start(operator: Any) -> None:
    html = logged_in(operator).get("/deployments/").content.decode()
    assert "No deployments yet" in html


# --- the form ----------------------------------------------------------------------------
def test_start_a_rollout_to_chosen_devices(
    operator: Any, model: ModelArtifact, devices: dict[str, Device]
) -> None:
    client = logged_in(operator)
    form = client.get("/deployments/new/").content.decode()
    assert f'<option value="{model.id}">linear 1</option>' in form
    assert "cam-1 (end, online)" in form and "Edge (1 devices)" in form
    chosen = [devices["cam-1"], devices["cam-2"], devices["mec-1"]]
    response = client.post(
        "/deployments/new/",
        form_data(
            name="linear to three",
            model=str(model.id),
            devices=[str(device.id) for device in chosen],
            canary_percent="20",
            batch_percent="100",
            max_failed_percent="50",
            device_timeout_s="120",
            latency_budget_ms="25",
        ),
    )
    deployment = Deployment.objects.get()
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == f"/deployments/{deployment.id}/"
    assert deployment.name == "linear to three" and deployment.created_by == operator
    assert (deployment.model, deployment.variant) == (model, None)
    assert deployment.target_kind == "devices"
    policy = (
        deployment.canary_percent,
        deployment.batch_percent,
        deployment.max_failed_percent,
        deployment.device_timeout_s,
        deployment.latency_budget_ms,
    )
    assert policy == (20, 100, 50, 120, 25.0)
    targets = dict(deployment.targets.values_list("device__name", "state"))
    assert targets == {"cam-1": "ordered", "cam-2": "pending", "mec-1": "pending"}
    html = client.get(response["Location"]).content.decode()
    assert "Rollout “linear to three” started: canary released to 1 device." in html


def test_each_kind_of_targets(
    operator: Any, model: ModelArtifact, variant: Variant, devices: dict[str, Device]
) -> None:
    client = logged_in(operator)
    cases = [
        ({"target_kind": "tier", "tier": "edge"}, {"mec-1"}),
        ({"target_kind": "labels", "labels": "site = north\n\n"}, {"cam-1", "cam-2"}),
    ]
    for fields, expected in cases:
        response = client.post(
            "/deployments/new/",
            form_data(variant=str(variant.id), canary_percent="0", batch_percent="100", **fields),
        )
        assert response.status_code == 302, response.content.decode()
        deployment = Deployment.objects.get(pk=response["Location"].split("/")[2])
        assert set(deployment.targets.values_list("device__name", flat=True)) == expected
        # A variant alone names its model.
        assert (deployment.model, deployment.variant) == (model, variant)
        assert deployment.manifest is not None and deployment.manifest.sha256 == variant.sha256
        client.post(f"/deployments/{deployment.id}/abort/")  # frees the devices


@pytest.fixture
def approved(operator: Any, admin_user: Any, fleet: list[Device]) -> Decision:
    """An approved decision of a small solve on the rollout fleet."""
    workload = scheduling.create_workload_from_template(
        name="one camera",
        template="video-pipeline",
        parameters={"cameras": 1},
        created_by=operator,
    )
    job = scheduling.submit_job(
        workload=workload, created_by=operator, objectives=["makespan", "energy"], **SMALL_RUN
    )
    run_scheduling_job(str(job.id))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    knee = Solution.objects.get(job=job, kind=SolutionKind.FRONT, is_knee=True)
    decision = scheduling.propose_decision(solution=knee, proposed_by=operator)
    return scheduling.approve_decision(decision, reviewed_by=admin_user)


def test_deploy_to_the_devices_of_an_approved_decision(
    operator: Any, model: ModelArtifact, approved: Decision
) -> None:
    client = logged_in(operator)
    assignment: dict[str, str] = approved.solution.assignment
    task, device_id = sorted(assignment.items())[0]
    form = client.get("/deployments/new/").content.decode()
    assert f'<option value="{approved.id}">one camera:' in form

    bad = client.post(
        "/deployments/new/",
        form_data(
            model=str(model.id), target_kind="decision", decision=str(approved.id), tasks="nope"
        ),
    )
    assert bad.status_code == 400
    assert field_errors(bad.content.decode(), "tasks") == [
        "Tasks: The decision places no task nope."
    ]
    assert not Deployment.objects.exists()

    response = client.post(
        "/deployments/new/",
        form_data(
            model=str(model.id),
            target_kind="decision",
            decision=str(approved.id),
            tasks=f"{task}, {task}",
        ),
    )
    assert response.status_code == 302, response.content.decode()
    deployment = Deployment.objects.get()
    assert list(deployment.targets.values_list("device_id", flat=True)) == [uuid.UUID(device_id)]
    assert deployment.target_spec == {"decision": str(approved.id), "tasks": [task]}


BAD_INPUT = [
    # (fields, the field named, a piece of its message)
    ({"model": ""}, "model", "Choose an ONNX model or a variant"),
    ({"model": str(uuid.uuid4())}, "model", "Select a valid choice"),
    ({"devices": []}, "devices", "Required for these targets"),
    ({"target_kind": "tier"}, "tier", "Required for these targets"),
    ({"target_kind": "tier", "tier": "moon"}, "tier", "Select a valid choice"),
    ({"target_kind": "labels", "labels": "site"}, "labels", "Line 1 is not KEY=VALUE"),
    ({"target_kind": "labels", "labels": "a=1\na=2"}, "labels", "a is given twice"),
    ({"target_kind": "labels", "labels": "site=east"}, "labels", "match no device"),
    ({"target_kind": "decision"}, "decision", "Required for these targets"),
    ({"target_kind": "nowhere"}, "target_kind", "Select a valid choice"),
    ({"canary_percent": "101"}, "canary_percent", "less than or equal to 100"),
    ({"batch_percent": "0"}, "batch_percent", "greater than or equal to 1"),
    ({"max_failed_percent": "-1"}, "max_failed_percent", "greater than or equal to 0"),
    ({"device_timeout_s": "0"}, "device_timeout_s", "greater than or equal to 1"),
    ({"device_timeout_s": "soon"}, "device_timeout_s", "Enter a whole number"),
    ({"latency_budget_ms": "0"}, "latency_budget_ms", "greater than or equal to 0.001"),
    ({"name": "x" * 201}, "name", "at most 200 characters"),
]


@pytest.mark.parametrize(("fields", "name", "message"), BAD_INPUT)
def test_bad_input_names_the_field_and_creates_nothing(
    operator: Any,
    model: ModelArtifact,
    devices: dict[str, Device],
    fields: dict[str, Any],
    name: str,
    message: str,
) -> None:
    data = form_data(**{"model": str(model.id), "devices": [str(devices["cam-1"].id)], **fields})
    response = logged_in(operator).post("/deployments/new/", data)
    assert response.status_code == 400
    html = response.content.decode()
    errors = field_errors(html, name)
    assert errors and message in errors[0], (errors, re.findall(r'field-error".*?</p>', html))
    assert "No deployment was started" in html
    assert not Deployment.objects.exists() and not SignedManifest.objects.exists()
    assert not Device.objects.filter(desired_model__isnull=False).exists()


def test_refusals_of_the_action_land_on_their_field(
    operator: Any,
    model: ModelArtifact,
    variant: Variant,
    tmp_path: Path,
    rollout: Deployment,
    devices: dict[str, Device],
) -> None:
    """What only `create_deployment` knows: a variant of another model, and devices that
    are in a rollout already (its "targets" refusal goes to the field that chose them)."""
    other = onnx_model(tmp_path, operator, name="other", seed=5)
    client = logged_in(operator)
    cases = [
        (
            form_data(
                model=str(other.id), variant=str(variant.id), devices=[str(devices["mec-1"].id)]
            ),
            "variant",
            "The variant is not a variant of this model.",
        ),
        (
            form_data(model=str(model.id), devices=[str(devices["cam-3"].id)]),
            "devices",
            f"Already in a rollout that is not finished: cam-3 ({rollout.name})",
        ),
        (
            form_data(model=str(model.id), target_kind="labels", labels="site=south"),
            "labels",
            "Already in a rollout that is not finished: cam-3",
        ),
    ]
    for data, name, message in cases:
        response = client.post("/deployments/new/", data)
        assert response.status_code == 400
        errors = field_errors(response.content.decode(), name)
        assert errors and message in errors[0], errors
    assert Deployment.objects.count() == 1
    assert SignedManifest.objects.count() == 1


def test_retired_devices_and_torch_models_are_not_offered(
    operator: Any, model: ModelArtifact, devices: dict[str, Device], hub_files: dict[str, Path]
) -> None:
    from devices.actions import retire_device
    from tests.frontend.hub_helpers import register_model

    torch = register_model(hub_files["model.pt"], operator, name="digits-torch")
    retire_device(devices["cam-4"])
    html = logged_in(operator).get("/deployments/new/").content.decode()
    assert str(devices["cam-4"].id) not in html
    assert str(torch.id) not in html and str(model.id) in html


def test_the_model_hub_links_preselect_what_to_deploy(
    operator: Any, model: ModelArtifact, variant: Variant, hub_files: dict[str, Path]
) -> None:
    from tests.frontend.hub_helpers import register_model

    client = logged_in(operator)
    page = client.get(f"/models/{model.id}/").content.decode()
    assert f'href="/deployments/new/?model={model.id}"' in page
    assert f'href="/deployments/new/?variant={variant.id}"' in section(page, "model-variants")
    torch = register_model(hub_files["model.pt"], operator, name="digits-torch")
    assert "/deployments/new/?model=" not in client.get(f"/models/{torch.id}/").content.decode()

    form = client.get(f"/deployments/new/?model={model.id}").content.decode()
    assert f'<option value="{model.id}" selected>linear 1</option>' in form
    form = client.get(f"/deployments/new/?variant={variant.id}").content.decode()
    assert re.search(rf'<option value="{variant.id}" selected>linear 1 · int8-static', form)
    form = client.get("/deployments/new/?variant=junk&model=").content.decode()
    assert not re.search(r'value="[0-9a-f-]{36}" selected', form)


def test_labels_are_read_as_key_value_lines() -> None:
    assert console_forms.parse_labels(" site = north \n\nrole=cam=1\n") == {
        "site": "north",
        "role": "cam=1",
    }
    assert console_forms.parse_labels("") == {}


# --- the rollout page --------------------------------------------------------------------
def test_the_rollout_page_shows_phases_and_every_devices_state(
    operator: Any, model: ModelArtifact, devices: dict[str, Device]
) -> None:
    cameras = [devices[name] for name in ("cam-1", "cam-2", "cam-3", "cam-4")]
    deployment = deploy(
        model, cameras, user=operator, canary_percent=25, batch_percent=75, max_failed_percent=50
    )
    report(devices["cam-1"], "active")  # the canary settles: the batch is released
    report(devices["cam-2"], "downloading", progress=0.42)
    report(devices["cam-3"], "verifying")
    report(
        devices["cam-4"],
        "failed",
        reason="hash_mismatch",
        detail="The bytes' SHA-256 is not the manifest's.",
    )
    html = logged_in(operator).get(f"/deployments/{deployment.id}/").content.decode()

    summary = section(html, "rollout-summary")
    assert 'id="deployment-status" data-status="running">Running</span>' in summary
    assert "phase <strong>2</strong> of 2: batch 1" in summary
    assert 'aria-label="1 active, 1 verifying, 1 downloading, 1 failed"' in summary
    assert re.search(r'id="stat-active">1<', summary) and re.search(r'id="stat-failed">1<', summary)
    assert re.search(r'id="stat-in-flight">2<', summary)
    phases = section(html, "phases")
    canary, batch = re.findall(r'<tr data-phase="\d".*?</tr>', phases, re.S)
    assert "Canary" in canary and "1 of 1</td>" in canary
    assert "Batch 1" in batch and 'aria-current="step"' in batch
    assert re.findall(r'<td class="num">(.*?)</td>', batch) == ["3", "3 of 3", "1 of 3"]
    policy = section(html, "policy")
    assert "A list of devices: 4 chosen devices" in policy and "50 % of the released" in policy
    assert deployment.manifest is not None and deployment.manifest.sha256 in policy

    assert "Active" in target_row(html, devices["cam-1"])
    downloading = target_row(html, devices["cam-2"])
    assert 'class="pill state-downloading"' in downloading
    assert 'aria-valuenow="42"' in downloading and "42 %" in downloading
    assert "Verifying" in target_row(html, devices["cam-3"])
    failed = target_row(html, devices["cam-4"])
    assert '<span class="reason">hash_mismatch</span>' in failed
    assert "The bytes&#x27; SHA-256 is not the manifest&#x27;s." in failed
    assert f'href="/devices/{devices["cam-4"].id}/"' in failed
    for button in ("pause-deployment", "abort-deployment"):
        assert f'id="{button}"' in summary
    assert 'id="resume-deployment"' not in summary


def test_pause_resume_and_abort(
    operator: Any, rollout: Deployment, devices: dict[str, Device]
) -> None:
    client = logged_in(operator)
    url = f"/deployments/{rollout.id}/"

    response = client.post(f"{url}pause/", follow=True)
    assert response.redirect_chain == [(url, 302)]
    html = response.content.decode()
    assert "The rollout is paused" in html and 'data-status="paused">Paused<' in html
    assert 'id="resume-deployment"' in html and 'id="pause-deployment"' not in html
    report(devices["cam-1"], "active")  # the canary settles; paused, nothing more is released
    assert set(rollout.targets.values_list("state", flat=True)) == {"active", "pending"}

    html = client.post(f"{url}resume/", follow=True).content.decode()
    assert "The rollout is running again." in html
    assert dict(rollout.targets.values_list("device__name", "state"))["cam-2"] == "ordered"

    html = client.post(f"{url}abort/", follow=True).content.decode()
    assert "The rollout is aborted" in html
    rollout.refresh_from_db()
    assert rollout.status == DeploymentStatus.ROLLING_BACK
    assert 'id="ended-reason"' in html and "Aborted by op." in html
    assert 'id="abort-deployment"' not in html and 'id="pause-deployment"' not in html
    states = dict(rollout.targets.values_list("device__name", "state"))
    assert states == {
        "cam-1": "rolling_back",
        "cam-2": "rolling_back",
        "cam-3": "rolling_back",
        "cam-4": "skipped",
    }
    assert "Skipped" in target_row(html, devices["cam-4"])


def test_conflicts_are_messages_not_errors(operator: Any, rollout: Deployment) -> None:
    client = logged_in(operator)
    url = f"/deployments/{rollout.id}/"
    cases = [
        ("resume", "The rollout is running; only a paused one resumes."),
        ("abort", None),
        ("pause", "The rollout is rolling_back; only a running one pauses."),
        ("resume", "The rollout is rolling_back; only a paused one resumes."),
        ("abort", "The rollout is rolling_back; only a running or paused one aborts."),
    ]
    for action, conflict in cases:
        response = client.post(f"{url}{action}/", follow=True)
        assert response.status_code == 200 and response.redirect_chain == [(url, 302)]
        if conflict:
            assert f'<li class="alert alert-error" role="status">{conflict}</li>' in (
                response.content.decode()
            )
    assert DeploymentTarget.objects.filter(state=TargetState.ROLLING_BACK).count() == 1


def test_a_finished_rollout_offers_no_buttons(
    operator: Any, model: ModelArtifact, devices: dict[str, Device]
) -> None:
    deployment = deploy(model, [devices["mec-1"]], canary_percent=0, batch_percent=100)
    report(devices["mec-1"], "active")
    html = logged_in(operator).get(f"/deployments/{deployment.id}/").content.decode()
    summary = section(html, "rollout-summary")
    assert 'data-status="succeeded">Succeeded<' in summary and "Every device confirmed" in summary
    assert "<button" not in summary
    assert "phase <strong>1</strong> of 1: batch 1" in summary


def test_an_automatic_rollback_says_why(
    operator: Any, model: ModelArtifact, devices: dict[str, Device]
) -> None:
    deployment = deploy(model, [devices["cam-1"], devices["cam-2"]], canary_percent=50)
    report(devices["cam-1"], "failed", reason="health_check_failed", detail="p50 over budget")
    html = logged_in(operator).get(f"/deployments/{deployment.id}/").content.decode()
    reason = re.search(r'<div class="alert alert-error" role="status" id="ended-reason">.*?</div>',
                       html, re.S)  # fmt: skip
    assert reason, html
    assert "1 of 1 devices failed, above the threshold of 0%" in reason.group(0)
    assert "Failed" in target_row(html, devices["cam-1"])
    assert "Skipped" in target_row(html, devices["cam-2"])


# --- the device page ---------------------------------------------------------------------
def test_the_device_page_shows_its_model_and_rollouts(
    operator: Any, model: ModelArtifact, variant: Variant, devices: dict[str, Device]
) -> None:
    device = devices["mec-1"]
    client = logged_in(operator)
    html = client.get(f"/devices/{device.id}/").content.decode()
    assert "The agent has not reported a model yet." in section(html, "active-model")
    assert "No rollout has included this device yet." in section(html, "device-rollouts")

    first = deploy(model, [device], name="first", canary_percent=0)
    report(device, "active")
    second = deploy(model, [device], variant=variant, name="second", canary_percent=0)
    report(device, "failed", reason="disk_full", detail="No room for 1 KiB.")
    html = client.get(f"/devices/{device.id}/").content.decode()

    active = section(html, "active-model")
    assert f'<a href="/models/{model.id}/">linear 1</a>' in active
    assert "the original" in active and model.sha256 in active
    assert first.manifest is not None
    assert f"<dd>{first.manifest.version}</dd>" in active
    rows = re.findall(
        r'<tr data-deployment-id="([^"]+)">(.*?)</tr>', section(html, "device-rollouts"), re.S
    )
    assert [row[0] for row in rows] == [str(second.id), str(first.id)]  # newest first
    assert "int8-static" in rows[0][1] and "disk_full" in rows[0][1] and "Failed" in rows[0][1]
    assert "Rolled back" in rows[0][1]  # the rollout, after its only device failed
    assert "Succeeded" in rows[1][1] and "Active" in rows[1][1]
    assert f'href="/deployments/{first.id}/"' in rows[1][1]


def test_the_device_page_names_a_variant_it_serves(
    operator: Any, model: ModelArtifact, variant: Variant, devices: dict[str, Device]
) -> None:
    device = devices["cam-1"]
    deploy(model, [device], variant=variant, canary_percent=0)
    report(device, "active")
    active = section(
        logged_in(operator).get(f"/devices/{device.id}/").content.decode(), "active-model"
    )
    assert "<code>int8-static</code>" in active and variant.sha256 in active


def test_anonymous_clients_cannot_start_rollouts(
    client: Client, model: ModelArtifact, devices: dict[str, Device]
) -> None:
    data = form_data(model=str(model.id), devices=[str(devices["cam-1"].id)])
    response = client.post("/deployments/new/", data)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Deployment.objects.exists()


def test_writes_need_the_csrf_token(
    operator: Any, rollout: Deployment, model: ModelArtifact, devices: dict[str, Device]
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    data = form_data(model=str(model.id), devices=[str(devices["mec-1"].id)])
    assert client.post("/deployments/new/", data).status_code == 403
    for action in ACTIONS:
        assert client.post(f"/deployments/{rollout.id}/{action}/").status_code == 403
    assert Deployment.objects.count() == 1
    rollout.refresh_from_db()
    assert rollout.status == DeploymentStatus.RUNNING
    # The page's forms carry the token.
    html = client.get(f"/deployments/{rollout.id}/").content.decode()
    assert html.count('name="csrfmiddlewaretoken"') >= 3  # log out, pause, abort


def test_a_compression_jobs_variants_link_to_the_form(operator: Any, variant: Variant) -> None:
    job = variant.job
    job.report = {
        "variants": [{"name": "original", "size_bytes": 100}],
        "evaluation": {"labelled": True, "samples": 10},
        "host": {"threads": 2},
    }
    job.save(update_fields=["report"])
    html = logged_in(operator).get(f"/models/jobs/{job.id}/").content.decode()
    table = section(html, "comparison-table")
    assert f'href="/deployments/new/?variant={variant.id}" data-deploy="int8-static"' in table
    assert table.count("data-deploy=") == 1  # not the original: its model page has the link
