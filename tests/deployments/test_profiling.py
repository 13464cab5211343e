"""Hardware-in-the-loop profiling: agents time a model on their own hardware, the result is
stored with the model, and the scheduler's cost model uses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.signing import keyring
from deployments import actions
from deployments.actions import ProfileReport
from deployments.models import ProfilingRun, ProfilingState
from devices.actions import desired_state
from devices.models import Device, DeviceStatus
from edge_agent.manifest import TrustStore, verify_manifest
from models_hub.models import MeasuredLatency, ModelArtifact
from scheduling import actions as scheduling
from scheduling.models import Workload
from tests.api.mixins import client_for
from tests.deployments.conftest import FleetFactory

URL = "/api/v1/profiling-runs/"
RESULT_URL = "/api/v1/agents/profile-result/"


def profile(model: ModelArtifact, devices: list[Device], **options: Any) -> ProfilingRun:
    return actions.start_profiling(
        model=model, variant=None, devices=[d.pk for d in devices], created_by=None, **options
    )


def measured(device: Device, run: ProfilingRun, p50_ms: float) -> None:
    report = ProfileReport(run.pk, "measured", p50_ms=p50_ms, p95_ms=p50_ms * 1.5, runs=50)
    actions.record_profile_result(device, report)


def test_agents_get_a_signed_profiling_order(model_v1: ModelArtifact, fleet: FleetFactory):
    devices = [device for device, _ in fleet(2)]
    run = profile(model_v1, devices, runs=20)
    order = desired_state(Device.objects.get(pk=devices[0].pk))["profile"]
    assert (order["run_id"], order["runs"]) == (str(run.pk), 20)
    manifest = verify_manifest(order["manifest"], TrustStore.pinned(keyring().active().public_key))
    assert manifest.artifact is not None and manifest.artifact.sha256 == model_v1.sha256
    assert manifest.expires > datetime.now(UTC)
    assert "model" not in desired_state(Device.objects.get(pk=devices[0].pk))


def test_a_result_is_stored_with_the_model_and_the_order_withdrawn(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(2)]
    run = profile(model_v1, devices)
    measured(devices[0], run, 4.0)
    actions.record_profile_result(
        devices[1], ProfileReport(run.pk, "failed", reason="hash_mismatch", detail="tampered")
    )
    latency = MeasuredLatency.objects.get()
    assert (latency.model, latency.variant, latency.device) == (model_v1, None, devices[0])
    assert (latency.p50_ms, latency.p95_ms, latency.runs) == (4.0, 6.0, 50)
    assert Device.objects.filter(desired_profile__isnull=False).count() == 0
    run.refresh_from_db()
    assert run.finished
    failed = run.targets.get(device=devices[1])
    assert (failed.state, failed.reason) == (ProfilingState.FAILED, "hash_mismatch")
    # A resent report changes nothing.
    measured(devices[0], run, 99.0)
    assert MeasuredLatency.objects.count() == 1


def test_a_silent_device_times_out(model_v1: ModelArtifact, fleet: FleetFactory):
    devices = [device for device, _ in fleet(1)]
    run = profile(model_v1, devices, timeout_s=30)
    actions.sweep_rollouts(timezone.now() + timedelta(seconds=31))
    run.refresh_from_db()
    assert run.finished and run.targets.get().reason == "timeout"
    assert Device.objects.get(pk=devices[0].pk).desired_profile is None


@pytest.mark.parametrize(
    ("options", "field"),
    [({"runs": 0}, "runs"), ({"runs": 10**6}, "runs"), ({"timeout_s": 0}, "timeout_s")],
)
def test_bad_options_are_refused(
    model_v1: ModelArtifact, fleet: FleetFactory, options: dict[str, Any], field: str
):
    devices = [device for device, _ in fleet(1)]
    with pytest.raises(actions.DeploymentError) as refused:
        profile(model_v1, devices, **options)
    assert refused.value.field == field
    assert not ProfilingRun.objects.exists()


def test_a_device_already_profiling_is_refused(model_v1: ModelArtifact, fleet: FleetFactory):
    devices = [device for device, _ in fleet(1)]
    profile(model_v1, devices)
    with pytest.raises(actions.DeploymentError) as refused:
        profile(model_v1, devices)
    assert refused.value.field == "devices" and "cam-0" in refused.value.message
    assert ProfilingRun.objects.count() == 1


class TestProfilingAPI:
    def test_create_and_report(
        self, operator: Any, model_v1: ModelArtifact, fleet: FleetFactory
    ) -> None:
        ((device, credential),) = fleet(1)
        body = {"model": str(model_v1.pk), "devices": [str(device.pk)], "runs": 10}
        created = client_for(operator).post(URL, body, format="json")
        assert created.status_code == 201, created.json()
        run = created.json()
        assert [t["state"] for t in run["targets"]] == ["ordered"]
        agent = APIClient()
        agent.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
        artifact = agent.get(f"/api/v1/agents/artifacts/{model_v1.sha256}/")
        assert artifact.status_code == 200
        result = {
            "run_id": run["id"],
            "state": "measured",
            "p50_ms": 2.5,
            "p95_ms": 3.0,
            "runs": 10,
        }
        assert agent.post(RESULT_URL, result, format="json").json() == {"state": "measured"}
        finished = client_for(operator).get(f"{URL}{run['id']}/").json()
        assert finished["finished"] and finished["targets"][0]["p50_ms"] == 2.5

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"model": "00000000-0000-0000-0000-000000000000"}, "model"),
            ({"devices": []}, "devices"),
            ({"devices": ["00000000-0000-0000-0000-000000000000"]}, "devices"),
            ({"runs": 0}, "runs"),
            ({"timeout_s": "soon"}, "timeout_s"),
        ],
    )
    def test_bad_requests_name_the_field(
        self,
        operator: Any,
        model_v1: ModelArtifact,
        fleet: FleetFactory,
        change: dict[str, Any],
        field: str,
    ) -> None:
        ((device, _),) = fleet(1)
        body = {"model": str(model_v1.pk), "devices": [str(device.pk)], **change}
        response = client_for(operator).post(URL, body, format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
        assert not ProfilingRun.objects.exists()

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"run_id": "00000000-0000-0000-0000-000000000000"}, "run_id"),
            ({"state": "guessed"}, "state"),
            ({"p50_ms": None}, "p50_ms"),
            ({"p95_ms": 1.0}, "p95_ms"),
            ({"runs": 0}, "runs"),
            ({"state": "failed"}, "reason"),
            ({"p50_ms": -1}, "p50_ms"),
        ],
    )
    def test_bad_results_name_the_field_and_store_nothing(
        self, model_v1: ModelArtifact, fleet: FleetFactory, change: dict[str, Any], field: str
    ) -> None:
        ((device, credential),) = fleet(1)
        run = profile(model_v1, [device])
        agent = APIClient()
        agent.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
        body = {"run_id": str(run.pk), "state": "measured", "p50_ms": 2.0, "p95_ms": 3.0, "runs": 5}
        response = agent.post(RESULT_URL, {**body, **change}, format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
        assert not MeasuredLatency.objects.exists()
        assert run.targets.get().state == ProfilingState.ORDERED


def test_the_scheduler_uses_measured_latency_for_tasks_of_that_model(
    model_v1: ModelArtifact, fleet: FleetFactory, operator: Any
):
    devices = [device for device, _ in fleet(2)]
    Device.objects.update(status=DeviceStatus.ONLINE)
    run = profile(model_v1, devices)
    measured(devices[0], run, 8.0)
    measured(devices[0], profile_again(model_v1, devices[0]), 5.0)  # the newest wins
    document = {
        "tasks": [
            {
                "id": "detect",
                "flops": 1e9,
                "memory_mb": 1,
                "model": str(model_v1.pk),
                "inferences": 30,
            },
            {"id": "other", "flops": 1e9, "memory_mb": 1},
        ],
        "edges": [],
    }
    workload = scheduling.create_workload_from_document(
        name="w", document=document, created_by=operator
    )
    problem = scheduling.build_problem(workload, ["makespan", "energy"])
    detect, other = problem["tasks"]
    assert detect["runtime_s"] == {str(devices[0].pk): pytest.approx(30 * 5.0 / 1000)}
    assert "runtime_s" not in other


def profile_again(model: ModelArtifact, device: Device) -> ProfilingRun:
    return profile(model, [device])


@pytest.mark.parametrize(
    ("task", "path"),
    [
        ({"model": "00000000-0000-0000-0000-000000000000"}, "tasks[0].model"),
        ({"model": "yolo"}, "tasks[0].model"),
        ({"model": "@model", "inferences": 0}, "tasks[0].inferences"),
    ],
)
def test_a_task_naming_an_unknown_model_is_refused(
    model_v1: ModelArtifact, fleet: FleetFactory, operator: Any, task: dict[str, Any], path: str
):
    fleet(1)
    Device.objects.update(status=DeviceStatus.ONLINE)
    task = {k: (str(model_v1.pk) if v == "@model" else v) for k, v in task.items()}
    document = {"tasks": [{"id": "t", "flops": 1e9, "memory_mb": 1, **task}], "edges": []}
    workload: Workload = scheduling.create_workload_from_document(
        name="w", document=document, created_by=operator
    )
    with pytest.raises(scheduling.SchedulingError) as refused:
        scheduling.build_problem(workload, ["makespan"])
    assert refused.value.field == "workload" and path in refused.value.message


def test_rotation_re_signs_profiling_orders(model_v1: ModelArtifact, fleet: FleetFactory):
    devices = [device for device, _ in fleet(1)]
    profile(model_v1, devices)
    trust = TrustStore.pinned(keyring().active().public_key)
    new_key_id = actions.rotate_signing_key()
    order = Device.objects.get(pk=devices[0].pk).desired_profile
    assert order is not None
    assert trust.apply_rotations(order["key_rotations"]) == [new_key_id]
    verify_manifest(order["manifest"], trust)


def test_heartbeat_answers_carry_the_profiling_order(
    model_v1: ModelArtifact, fleet: FleetFactory
) -> None:
    ((device, credential),) = fleet(1)
    run = profile(model_v1, [device])
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    answer = agent.post("/api/v1/agents/heartbeat/", {"telemetry": []}, format="json").json()
    assert answer["desired_state"]["profile"]["run_id"] == str(run.pk)
