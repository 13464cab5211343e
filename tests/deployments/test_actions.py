"""Rollouts through their actions: phases, failures, rollbacks, pauses, timeouts, keys.

Agents are played by calls to `record_model_status`, the action behind the agents' API;
the tests in tests/integration run the real agent processes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from controlplane.signing import keyring
from deployments import actions
from deployments.actions import RolloutPolicy, StatusReport, TargetSelector
from deployments.models import (
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    InstalledModel,
    TargetState,
)
from devices.actions import desired_state
from devices.models import Device
from edge_agent.manifest import ManifestRefused, Reason, TrustStore, check_manifest
from models_hub.models import ModelArtifact
from tests.deployments.conftest import FleetFactory


def deploy(model: ModelArtifact, devices: list[Device], **policy: Any) -> Deployment:
    selector = TargetSelector(kind="devices", devices=[device.pk for device in devices])
    return actions.create_deployment(
        model=model,
        variant=None,
        selector=selector,
        policy=RolloutPolicy(**policy),
        created_by=None,
    )


def order_of(device: Device) -> dict[str, Any]:
    device.refresh_from_db()
    assert device.desired_model is not None
    return device.desired_model


def report(device: Device, state: str, *, reason: str = "", active: bool = True) -> None:
    """What an agent reports about its current order; `active` for `state == "active"`:
    the order's artifact is what it now serves."""
    order = order_of(device)
    signed = order["manifest"]["signed"]
    serving = None
    if state == "active" and active and signed["artifact"]:
        serving = (signed["artifact"]["sha256"], signed["version"])
    actions.record_model_status(
        device,
        StatusReport(
            deployment_id=order["deployment_id"],
            version=signed["version"],
            state=state,
            reason=reason,
            detail=f"{reason} in a test" if reason else "",
            active_sha256=serving[0] if serving else None,
            active_version=serving[1] if serving else None,
        ),
    )


def states(deployment: Deployment) -> dict[str, str]:
    return dict(deployment.targets.values_list("device__name", "state"))


def install(model: ModelArtifact, devices: list[Device]) -> None:
    """Run a whole rollout of `model` to `devices`, every agent succeeding."""
    deployment = deploy(model, devices, canary_percent=0, batch_percent=100)
    for device in devices:
        report(device, "active")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED


def test_the_canary_goes_first_then_the_batches(model_v1: ModelArtifact, fleet: FleetFactory):
    devices = [device for device, _ in fleet(5)]
    deployment = deploy(model_v1, devices, canary_percent=20, batch_percent=50)
    assert deployment.phase_count == 3  # 1 canary, then 3 and 1
    assert states(deployment) == {
        "cam-0": "ordered",
        **{f"cam-{i}": "pending" for i in range(1, 5)},
    }
    assert desired_state(Device.objects.get(name="cam-1")).get("model") is None
    report(devices[0], "downloading")
    assert states(deployment)["cam-1"] == "pending"
    report(devices[0], "active")
    assert [states(deployment)[f"cam-{i}"] for i in range(5)] == [
        "active",
        "ordered",
        "ordered",
        "ordered",
        "pending",
    ]
    for device in devices[1:4]:
        report(device, "active")
    report(devices[4], "active")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED
    assert InstalledModel.objects.get(device=devices[4]).sha256 == model_v1.sha256


def test_the_order_is_signed_and_verifies_with_the_pinned_key(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(1)]
    deploy(model_v1, devices)
    order = desired_state(Device.objects.get(pk=devices[0].pk))["model"]
    trust = TrustStore.pinned(keyring().active().public_key)
    manifest = check_manifest(order["manifest"], trust, datetime.now(UTC), None)
    assert manifest.artifact is not None
    assert (manifest.artifact.sha256, manifest.artifact.size) == (
        model_v1.sha256,
        model_v1.size_bytes,
    )
    assert manifest.model is not None and manifest.model.version == "1"
    assert manifest.io is not None
    assert [spec.shape for spec in manifest.io.outputs] == [(None, 3)]
    assert order["artifact_url"] == f"/api/v1/agents/artifacts/{model_v1.sha256}/"
    tampered = {**order["manifest"], "signed": {**order["manifest"]["signed"], "version": 10**6}}
    with pytest.raises(ManifestRefused) as refused:
        check_manifest(tampered, trust, datetime.now(UTC), None)
    assert refused.value.reason is Reason.BAD_SIGNATURE


def test_a_failed_canary_rolls_back_every_device_that_got_the_new_model(
    model_v1: ModelArtifact, model_v2: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(5)]
    install(model_v1, devices)
    deployment = deploy(model_v2, devices, canary_percent=40, batch_percent=50)
    install_version = order_of(devices[0])["manifest"]["signed"]["version"]
    report(devices[0], "active")
    report(devices[1], "failed", reason="health_check_failed")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.ROLLING_BACK
    assert "1 of 2 devices failed" in deployment.ended_reason
    assert states(deployment) == {
        "cam-0": "rolling_back",
        "cam-1": "failed",
        **{f"cam-{i}": "skipped" for i in range(2, 5)},
    }
    # The canaries are ordered back to v1, under a newer version than the install order.
    for device in devices[:2]:
        signed = order_of(device)["manifest"]["signed"]
        assert signed["artifact"]["sha256"] == model_v1.sha256
        assert signed["version"] > install_version
    # The devices never released keep their v1 order: nothing reached them.
    assert order_of(devices[4])["manifest"]["signed"]["artifact"]["sha256"] == model_v1.sha256
    assert order_of(devices[4])["deployment_id"] != str(deployment.pk)
    report(devices[0], "active")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.ROLLED_BACK
    assert states(deployment)["cam-0"] == "rolled_back"
    assert InstalledModel.objects.get(device=devices[0]).sha256 == model_v1.sha256


def test_a_device_that_ran_nothing_is_ordered_to_run_nothing(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(2)]
    deployment = actions.pause_deployment(deploy(model_v1, devices, canary_percent=50))
    report(devices[0], "active")
    actions.abort_deployment(deployment, by=None)
    signed = order_of(devices[0])["manifest"]["signed"]
    assert signed["artifact"] is None and order_of(devices[0])["artifact_url"] is None
    report(devices[0], "active", active=False)
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.ROLLED_BACK
    assert InstalledModel.objects.get(device=devices[0]).sha256 == ""


def test_failures_within_the_threshold_do_not_stop_the_rollout(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(4)]
    deployment = deploy(
        model_v1, devices, canary_percent=50, batch_percent=50, max_failed_percent=50
    )
    report(devices[0], "active")
    report(devices[1], "failed", reason="disk_full")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.RUNNING
    assert states(deployment)["cam-2"] == "ordered"
    target = deployment.targets.get(device=devices[1])
    assert (target.reason, target.detail) == ("disk_full", "disk_full in a test")


def test_pause_holds_the_next_phase_and_resume_releases_it(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(2)]
    deployment = deploy(model_v1, devices, canary_percent=50)
    actions.pause_deployment(deployment)
    report(devices[0], "active")
    assert states(deployment)["cam-1"] == "pending"
    with pytest.raises(actions.DeploymentConflict):
        actions.pause_deployment(deployment)
    actions.resume_deployment(deployment)
    assert states(deployment)["cam-1"] == "ordered"
    report(devices[1], "active")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED
    for change in (actions.pause_deployment, actions.resume_deployment):
        with pytest.raises(actions.DeploymentConflict):
            change(deployment)
    with pytest.raises(actions.DeploymentConflict):
        actions.abort_deployment(deployment, by=None)


def test_a_silent_device_times_out_and_its_failure_aborts(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(3)]
    deployment = deploy(model_v1, devices, canary_percent=33, device_timeout_s=60)
    assert actions.sweep_rollouts(timezone.now()) == 0
    later = timezone.now() + timedelta(seconds=61)
    assert actions.sweep_rollouts(later) == 1
    deployment.refresh_from_db()
    target = deployment.targets.get(device=devices[0])
    assert (target.state, target.reason) == (TargetState.FAILED, "timeout")
    assert "last state: ordered" in target.detail
    # It failed without a word: it holds no new model as far as we know, so nothing
    # is rolling back, and the rollout ends at once.
    assert deployment.status == DeploymentStatus.ROLLED_BACK
    assert actions.sweep_rollouts(later) == 0


def test_a_device_in_an_unfinished_rollout_is_refused_and_nothing_changes(
    model_v1: ModelArtifact, model_v2: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(2)]
    deploy(model_v1, devices)
    before = (Deployment.objects.count(), DeploymentTarget.objects.count())
    with pytest.raises(actions.DeploymentError) as refused:
        deploy(model_v2, devices[1:])
    assert refused.value.field == "targets"
    assert "cam-1" in refused.value.message
    assert (Deployment.objects.count(), DeploymentTarget.objects.count()) == before


@pytest.mark.parametrize(
    ("selector", "field"),
    [
        (TargetSelector(kind="tier", tier="moon"), "tier"),
        (TargetSelector(kind="tier", tier="cloud"), "tier"),
        (TargetSelector(kind="labels"), "labels"),
        (TargetSelector(kind="labels", labels={"site": "nowhere"}), "labels"),
        (TargetSelector(kind="devices", devices=[__import__("uuid").uuid4()]), "devices"),
        (TargetSelector(kind="decision", decision=__import__("uuid").uuid4()), "decision"),
    ],
)
def test_selectors_that_name_nothing_are_refused(
    model_v1: ModelArtifact, fleet: FleetFactory, selector: TargetSelector, field: str
):
    fleet(2, labels={"site": "junction-4"})
    with pytest.raises(actions.DeploymentError) as refused:
        actions.create_deployment(
            model=model_v1, variant=None, selector=selector, policy=RolloutPolicy(), created_by=None
        )
    assert refused.value.field == field
    assert not Deployment.objects.exists()


def test_tier_and_label_selectors(model_v1: ModelArtifact, fleet: FleetFactory):
    fleet(2, tier="edge", labels={"site": "a"})
    fleet(1, tier="end", labels={"site": "b", "kind": "camera"})
    by_tier = actions.resolve_targets(TargetSelector(kind="tier", tier="edge"))
    assert [device.name for device in by_tier] == ["cam-0", "cam-1"]
    by_labels = actions.resolve_targets(TargetSelector(kind="labels", labels={"site": "b"}))
    assert [device.name for device in by_labels] == ["cam-2"]


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (RolloutPolicy(canary_percent=101), "canary_percent"),
        (RolloutPolicy(batch_percent=0), "batch_percent"),
        (RolloutPolicy(max_failed_percent=-1), "max_failed_percent"),
        (RolloutPolicy(device_timeout_s=0), "device_timeout_s"),
        (RolloutPolicy(latency_budget_ms=0), "latency_budget_ms"),
    ],
)
def test_bad_policies_are_refused(
    model_v1: ModelArtifact, fleet: FleetFactory, policy: RolloutPolicy, field: str
):
    devices = [device for device, _ in fleet(1)]
    with pytest.raises(actions.DeploymentError) as refused:
        actions.create_deployment(
            model=model_v1,
            variant=None,
            selector=TargetSelector(kind="devices", devices=[devices[0].pk]),
            policy=policy,
            created_by=None,
        )
    assert refused.value.field == field
    assert not Deployment.objects.exists()


def test_reports_about_other_deployments_or_versions_are_refused(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    (first, _), (second, _) = fleet(2)
    deployment = deploy(model_v1, [first])
    version = order_of(first)["manifest"]["signed"]["version"]
    with pytest.raises(actions.DeploymentError) as refused:
        actions.record_model_status(second, StatusReport(deployment.pk, version, "active"))
    assert refused.value.field == "deployment_id"
    with pytest.raises(actions.DeploymentError) as refused:
        actions.record_model_status(first, StatusReport(deployment.pk, version + 99, "active"))
    assert refused.value.field == "version"
    assert states(deployment) == {"cam-0": "ordered"}


def test_rotation_re_signs_orders_and_agents_follow_the_chain(
    model_v1: ModelArtifact, fleet: FleetFactory
):
    devices = [device for device, _ in fleet(1)]
    deploy(model_v1, devices)
    trust = TrustStore.pinned(keyring().active().public_key)
    old_key_id = keyring().active().key_id
    new_key_id = actions.rotate_signing_key()
    order = order_of(devices[0])
    assert [s["key_id"] for s in order["manifest"]["signatures"]] == [new_key_id]
    assert trust.apply_rotations(order["key_rotations"]) == [new_key_id]
    assert old_key_id not in trust
    check_manifest(order["manifest"], trust, datetime.now(UTC), None)


def test_orders_in_the_last_half_of_their_validity_are_renewed(
    model_v1: ModelArtifact, fleet: FleetFactory, settings: Any
):
    devices = [device for device, _ in fleet(1)]
    deployment = deploy(model_v1, devices)
    before = order_of(devices[0])["manifest"]["signed"]["version"]
    assert actions.renew_expiring_orders(timezone.now()) == 0
    later = timezone.now() + timedelta(seconds=settings.TRIAD_MANIFEST_TTL_S * 0.6)
    assert actions.renew_expiring_orders(later) == 1
    after = order_of(devices[0])["manifest"]["signed"]
    assert after["version"] > before
    assert after["artifact"]["sha256"] == model_v1.sha256
    deployment.refresh_from_db()
    assert deployment.manifest_id == after["version"]
    report(devices[0], "active")
    deployment.refresh_from_db()
    assert deployment.status == DeploymentStatus.SUCCEEDED
