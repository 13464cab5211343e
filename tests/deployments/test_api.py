"""The rollout API: operators' deployments and their controls; agents' status reports and
artifact downloads (Range included). Every refusal names its field and changes nothing."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import pytest
from rest_framework.test import APIClient

from deployments.models import Deployment, DeploymentStatus, DeploymentTarget
from devices.models import Device
from models_hub.models import ModelArtifact
from tests.api.mixins import CreateMixin, ListMixin, RoleMixin, client_for
from tests.deployments.conftest import FleetFactory

URL = "/api/v1/deployments/"
STATUS_URL = "/api/v1/agents/model-status/"
NOWHERE = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def devices(fleet: FleetFactory) -> list[tuple[Device, str]]:
    return fleet(3, tier="edge", labels={"site": "junction-4"})


@pytest.fixture
def deployment(operator: Any, model_v1: ModelArtifact, devices: list) -> dict[str, Any]:
    body = {"model": str(model_v1.pk), "target_kind": "tier", "tier": "edge"}
    response = client_for(operator).post(URL, body, format="json")
    assert response.status_code == 201, response.json()
    return dict(response.json())


def agent(credential: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    return client


class TestDeploymentAPI(RoleMixin, ListMixin, CreateMixin):
    url = URL
    fixture_name = "deployment"
    model = Deployment
    valid_create = {"target_kind": "labels", "labels": {"site": "junction-4"}}
    invalid_create = [
        ({"model": NOWHERE}, "model"),
        ({"variant": NOWHERE}, "variant"),
        ({"target_kind": "everything"}, "target_kind"),
        ({"target_kind": "devices", "labels": {}}, "devices"),
        ({"target_kind": "devices", "labels": {}, "devices": ["not-a-uuid"]}, "devices"),
        ({"target_kind": "devices", "labels": {}, "devices": [NOWHERE]}, "devices"),
        ({"target_kind": "tier", "labels": {}, "tier": "moon"}, "tier"),
        ({"target_kind": "tier", "labels": {}, "tier": "cloud"}, "tier"),
        ({"target_kind": "tier", "tier": "edge"}, "labels"),
        ({"labels": {"site": "nowhere"}}, "labels"),
        ({"labels": {"site": 4}}, "labels"),
        ({"target_kind": "decision", "labels": {}, "decision": NOWHERE}, "decision"),
        ({"canary_percent": 101}, "canary_percent"),
        ({"batch_percent": 0}, "batch_percent"),
        ({"max_failed_percent": -5}, "max_failed_percent"),
        ({"device_timeout_s": 0}, "device_timeout_s"),
        ({"latency_budget_ms": 0}, "latency_budget_ms"),
        ({"latency_budget_ms": "fast"}, "latency_budget_ms"),
        ({"name": "x" * 201}, "name"),
    ]

    def create_body(self, body: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        request.getfixturevalue("devices")
        return {"model": str(request.getfixturevalue("model_v1").pk), **self.valid_create, **body}

    def test_created_deployment_releases_its_canary(self, deployment: dict[str, Any]) -> None:
        assert deployment["status"] == "running"
        assert deployment["phase_count"] == 2  # the canary, then a batch of 2
        assert deployment["counts"]["ordered"] == 1 and deployment["counts"]["pending"] == 2
        assert deployment["target_spec"] == {"tier": "edge"}

    def test_a_torch_model_is_refused_naming_the_model(
        self, operator: Any, devices: list, model_v1: ModelArtifact
    ) -> None:
        ModelArtifact.objects.filter(pk=model_v1.pk).update(framework="torch")
        body = {"model": str(model_v1.pk), "target_kind": "tier", "tier": "edge"}
        response = client_for(operator).post(URL, body, format="json")
        assert response.status_code == 400
        assert "ONNX" in response.json()["model"][0]
        assert not Deployment.objects.exists()

    def test_targets_lists_each_device(self, operator: Any, deployment: dict[str, Any]) -> None:
        targets = client_for(operator).get(f"{URL}{deployment['id']}/targets/").json()
        assert [(t["device_name"], t["phase"], t["state"]) for t in targets] == [
            ("cam-0", 0, "ordered"),
            ("cam-1", 1, "pending"),
            ("cam-2", 1, "pending"),
        ]

    def test_pause_resume_abort_and_their_conflicts(
        self, operator: Any, deployment: dict[str, Any]
    ) -> None:
        client = client_for(operator)
        detail = f"{URL}{deployment['id']}/"
        assert client.post(f"{detail}resume/").status_code == 409
        assert client.post(f"{detail}pause/").json()["status"] == "paused"
        assert client.post(f"{detail}pause/").status_code == 409
        assert client.post(f"{detail}resume/").json()["status"] == "running"
        aborted = client.post(f"{detail}abort/").json()
        assert aborted["status"] == "rolling_back"
        assert aborted["ended_reason"] == f"Aborted by {operator.username}."
        conflict = client.post(f"{detail}abort/")
        assert conflict.status_code == 409 and conflict.json()["code"] == "conflict"

    def test_filter_by_status_and_device(
        self, operator: Any, deployment: dict[str, Any], devices: list
    ) -> None:
        client = client_for(operator)
        assert client.get(URL, {"status": "running"}).json()["count"] == 1
        assert client.get(URL, {"status": "succeeded"}).json()["count"] == 0
        assert client.get(URL, {"device": str(devices[0][0].pk)}).json()["count"] == 1


class TestModelStatusAPI:
    def test_a_report_moves_the_device_on(
        self, deployment: dict[str, Any], devices: list, model_v1: ModelArtifact
    ) -> None:
        device, credential = devices[0]
        body = {
            "deployment_id": deployment["id"],
            "version": deployment["manifest_version"],
            "state": "downloading",
            "progress": 0.5,
        }
        response = agent(credential).post(STATUS_URL, body, format="json")
        assert response.status_code == 200, response.json()
        assert response.json() == {"state": "downloading"}
        target = DeploymentTarget.objects.get(device=device)
        assert (target.state, target.progress) == ("downloading", 0.5)

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"deployment_id": NOWHERE}, "deployment_id"),
            ({"deployment_id": "x"}, "deployment_id"),
            ({"version": 0}, "version"),
            ({"version": 10**9}, "version"),
            ({"state": "dancing"}, "state"),
            ({"progress": 1.5}, "progress"),
            ({"state": "failed"}, "reason"),
            ({"active": {"sha256": "abc", "version": 1}}, "active"),
            ({"active": {"sha256": "0" * 64, "version": 0}}, "active"),
        ],
    )
    def test_bad_reports_name_the_field_and_change_nothing(
        self, deployment: dict[str, Any], devices: list, change: dict[str, Any], field: str
    ) -> None:
        device, credential = devices[0]
        body = {
            "deployment_id": deployment["id"],
            "version": deployment["manifest_version"],
            "state": "active",
            **change,
        }
        response = agent(credential).post(STATUS_URL, body, format="json")
        assert response.status_code == 400
        assert field in response.json(), response.json()
        assert DeploymentTarget.objects.get(device=device).state == "ordered"

    def test_a_device_outside_the_deployment_is_refused(
        self, deployment: dict[str, Any], fleet: FleetFactory
    ) -> None:
        ((_, credential),) = fleet(1, tier="end")
        body = {
            "deployment_id": deployment["id"],
            "version": deployment["manifest_version"],
            "state": "active",
        }
        response = agent(credential).post(STATUS_URL, body, format="json")
        assert response.status_code == 400 and "deployment_id" in response.json()

    def test_operators_and_strangers_cannot_report(
        self, deployment: dict[str, Any], operator: Any
    ) -> None:
        body = {"deployment_id": deployment["id"], "version": 1, "state": "active"}
        assert client_for(operator).post(STATUS_URL, body, format="json").status_code in (
            401,
            403,
        )
        assert APIClient().post(STATUS_URL, body, format="json").status_code == 401
        assert Deployment.objects.get().status == DeploymentStatus.RUNNING


class TestArtifactDownload:
    @pytest.fixture
    def canary(self, deployment: dict[str, Any], devices: list) -> tuple[Device, str]:
        return devices[0]  # cam-0: the canary, ordered at once

    def url(self, model: ModelArtifact) -> str:
        return f"/api/v1/agents/artifacts/{model.sha256}/"

    @staticmethod
    def body(response: Any) -> bytes:
        # The view streams from an async iterator (for ASGI); a sync client collects it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return b"".join(response)

    def test_the_whole_file(self, canary: tuple, model_v1: ModelArtifact) -> None:
        response = agent(canary[1]).get(self.url(model_v1))
        assert response.status_code == 200
        content = self.body(response)
        assert hashlib.sha256(content).hexdigest() == model_v1.sha256
        assert response["Content-Length"] == str(model_v1.size_bytes)
        assert response["ETag"] == f'"{model_v1.sha256}"'
        assert response["Accept-Ranges"] == "bytes"

    def test_a_range_resumes(self, canary: tuple, model_v1: ModelArtifact) -> None:
        whole = self.body(agent(canary[1]).get(self.url(model_v1)))
        response = agent(canary[1]).get(self.url(model_v1), HTTP_RANGE="bytes=100-")
        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
        assert self.body(response) == whole[100:]
        middle = agent(canary[1]).get(self.url(model_v1), HTTP_RANGE="bytes=10-19")
        assert self.body(middle) == whole[10:20]

    def test_a_range_past_the_end_is_416(self, canary: tuple, model_v1: ModelArtifact) -> None:
        size = model_v1.size_bytes
        response = agent(canary[1]).get(self.url(model_v1), HTTP_RANGE=f"bytes={size}-")
        assert response.status_code == 416
        assert response["Content-Range"] == f"bytes */{size}"

    def test_a_device_without_the_order_gets_nothing(
        self, deployment: dict[str, Any], devices: list, model_v1: ModelArtifact
    ) -> None:
        pending = devices[1]  # cam-1: not released yet
        response = agent(pending[1]).get(self.url(model_v1))
        assert response.status_code == 404
        assert APIClient().get(self.url(model_v1)).status_code == 401

    def test_another_artifact_is_not_served(self, canary: tuple, model_v2: ModelArtifact) -> None:
        assert agent(canary[1]).get(self.url(model_v2)).status_code == 404


def test_heartbeat_answers_carry_the_order(deployment: dict[str, Any], devices: list) -> None:
    _, credential = devices[0]
    answer = agent(credential).post("/api/v1/agents/heartbeat/", {"telemetry": []}, format="json")
    model = answer.json()["desired_state"]["model"]
    assert model["deployment_id"] == deployment["id"]
    assert model["manifest"]["signed"]["version"] == deployment["manifest_version"]


def test_enrollment_hands_out_the_signing_key(enrollment_secret: str) -> None:
    from controlplane.signing import keyring
    from tests.conftest import HARDWARE

    body = {"token": enrollment_secret, "name": "cam-9", "tier": "end", "hardware": HARDWARE}
    answer = APIClient().post("/api/v1/agents/enroll/", body, format="json").json()
    assert answer["signing"] == keyring().active().public_info()
