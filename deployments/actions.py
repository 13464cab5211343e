"""Every write of a rollout, each in one transaction; live events go out on commit.

Lock order, everywhere: the deployment row, then its targets, then devices. A status
report from an agent and the sweeper both lock the deployment first, so they queue up
instead of deadlocking, and a phase is released exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from controlplane.signing import keyring, utc_timestamp
from deployments import events
from deployments.models import (
    IN_FLIGHT_STATES,
    OPEN_DEPLOYMENT_STATUSES,
    SETTLED_STATES,
    Deployment,
    DeploymentStatus,
    DeploymentTarget,
    InstalledModel,
    ManifestKind,
    ProfilingRun,
    ProfilingState,
    ProfilingTarget,
    SignedManifest,
    TargetKind,
    TargetState,
)
from deployments.rollout import failures_exceed, phase_of_each
from devices.models import Device, DeviceStatus, Tier
from edge_agent.manifest import MANIFEST_TYPE
from models_hub.models import Framework, MeasuredLatency, ModelArtifact, Variant
from scheduling.models import Decision, DecisionStatus

ARTIFACT_URL = "/api/v1/agents/artifacts/{sha256}/"
PROBE_RUNS = 5


class DeploymentError(Exception):
    """A request the rollout refuses. `field` names the input at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class DeploymentConflict(DeploymentError):
    """The deployment's state forbids the request (pause a finished rollout...)."""


# --- inputs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetSelector:
    """Which devices a deployment addresses: one of the four kinds, with its argument."""

    kind: str
    devices: Sequence[uuid.UUID] = ()
    tier: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    decision: uuid.UUID | None = None
    tasks: Sequence[str] = ()

    def spec(self) -> dict[str, Any]:
        """The selector as the operator gave it, for the record."""
        if self.kind == TargetKind.DEVICES:
            return {"devices": [str(device) for device in self.devices]}
        if self.kind == TargetKind.TIER:
            return {"tier": self.tier}
        if self.kind == TargetKind.LABELS:
            return {"labels": dict(self.labels)}
        return {"decision": str(self.decision), "tasks": list(self.tasks)}


@dataclass(frozen=True)
class RolloutPolicy:
    canary_percent: int = 10
    batch_percent: int = 50
    max_failed_percent: int = 0
    device_timeout_s: int = 600
    latency_budget_ms: float | None = None


@dataclass(frozen=True)
class StatusReport:
    """An agent's model-status report (docs/rollouts.md), as the API validated it."""

    deployment_id: uuid.UUID
    version: int
    state: str
    progress: float = 0.0
    reason: str = ""
    detail: str = ""
    active_sha256: str | None = None
    active_version: int | None = None


AGENT_STATES = ("downloading", "verifying", "active", "failed")


# --- what is deployed -------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    """The file a deployment ships, and what the manifest says of it."""

    file_name: str
    sha256: str
    size: int
    model: dict[str, Any]
    io: dict[str, Any]


def artifact_of(model: ModelArtifact, variant: Variant | None) -> Artifact:
    if variant is None and model.framework != Framework.ONNX:
        raise DeploymentError(
            f"{model} is a {model.get_framework_display()} model; agents run ONNX. Deploy "
            "one of its variants (compression jobs export them to ONNX).",
            "model",
        )
    source = variant or model
    return Artifact(
        file_name=source.file.name,
        sha256=source.sha256,
        size=source.size_bytes,
        model={
            "id": str(model.id),
            "name": model.name,
            "version": model.version,
            "variant_id": str(variant.id) if variant else None,
            "variant": variant.name if variant else None,
        },
        io=onnx_io(Path(default_storage.path(source.file.name))),
    )


def onnx_io(path: Path) -> dict[str, Any]:
    """The graph's inputs and outputs with their shapes (None: a free axis) and dtypes."""
    import onnx  # the server has it; only this needs it

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}

    def described(values: Iterable[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": value.name,
                "shape": [
                    dim.dim_value if dim.HasField("dim_value") else None
                    for dim in value.type.tensor_type.shape.dim
                ],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(
                    value.type.tensor_type.elem_type
                ).name,
            }
            for value in values
            if value.name not in initializers
        ]

    return {"inputs": described(graph.input), "outputs": described(graph.output)}


# --- signing ----------------------------------------------------------------------------
def _sign(kind: str, deployment: Deployment | None, artifact: Artifact | None) -> SignedManifest:
    """Sign a manifest: the row comes first, so that its id (the version) can be signed."""
    now = timezone.now()
    expires = now + timedelta(seconds=settings.TRIAD_MANIFEST_TTL_S)
    row = SignedManifest.objects.create(
        kind=kind,
        deployment=deployment,
        sha256=artifact.sha256 if artifact else "",
        size_bytes=artifact.size if artifact else None,
        file_name=artifact.file_name if artifact else "",
        key_id="",
        created_at=now,
        expires_at=expires,
    )
    signed = {
        "_type": MANIFEST_TYPE,
        "version": row.id,
        "created": utc_timestamp(now),
        "expires": utc_timestamp(expires),
        "artifact": (
            {"sha256": artifact.sha256, "size": artifact.size, "format": "onnx"}
            if artifact
            else None
        ),
        "model": artifact.model if artifact else None,
        "io": artifact.io if artifact else None,
    }
    _store_signature(row, signed)
    return row


def _store_signature(row: SignedManifest, signed: dict[str, Any]) -> None:
    document = keyring().sign(signed)
    row.signed = document["signed"]
    row.signatures = document["signatures"]
    row.key_id = document["signatures"][0]["key_id"]
    row.save(update_fields=["signed", "signatures", "key_id"])


def _resigned(manifest: SignedManifest, kind: str, deployment: Deployment) -> SignedManifest:
    """The same content under a new version, expiry and signature (a rollback, a renewal)."""
    signed = manifest.signed
    artifact = signed.get("artifact")
    if artifact is None:
        return _sign(kind, deployment, None)
    return _sign(
        kind,
        deployment,
        Artifact(
            file_name=manifest.file_name,
            sha256=artifact["sha256"],
            size=artifact["size"],
            model=signed["model"],
            io=signed["io"],
        ),
    )


def order_for(deployment: Deployment, manifest: SignedManifest) -> dict[str, Any]:
    """The `desired_state.model` a device finds in its heartbeat answers."""
    return {
        "deployment_id": str(deployment.id),
        "manifest": manifest.document(),
        "artifact_url": ARTIFACT_URL.format(sha256=manifest.sha256) if manifest.sha256 else None,
        "health_check": {
            "latency_budget_ms": deployment.latency_budget_ms,
            "probe_runs": PROBE_RUNS,
        },
        "key_rotations": keyring().rotations(),
    }


def _order_devices(
    deployment: Deployment, manifest: SignedManifest, device_ids: Sequence[uuid.UUID]
) -> None:
    if not device_ids:
        return
    Device.objects.filter(pk__in=device_ids).update(desired_model=order_for(deployment, manifest))
    ids = list(device_ids)
    transaction.on_commit(lambda: events.nudge_agents(ids))


# --- targets ----------------------------------------------------------------------------
def resolve_targets(selector: TargetSelector) -> list[Device]:
    """The devices a selector names, in release order (name, then id); retired ones left out.

    Refuses, naming the field, a selector that names nothing or names what does not exist.
    """
    devices = Device.objects.exclude(status=DeviceStatus.RETIRED)
    if selector.kind == TargetKind.DEVICES:
        found = list(devices.filter(pk__in=selector.devices))
        missing = set(selector.devices) - {device.pk for device in found}
        if missing:
            names = ", ".join(sorted(str(pk) for pk in missing))
            raise DeploymentError(f"No such device, or it is retired: {names}.", "devices")
        chosen, field_name = found, "devices"
    elif selector.kind == TargetKind.TIER:
        if selector.tier not in Tier.values:
            raise DeploymentError(f"Unknown tier {selector.tier!r}.", "tier")
        chosen, field_name = list(devices.filter(tier=selector.tier)), "tier"
    elif selector.kind == TargetKind.LABELS:
        if not selector.labels:
            raise DeploymentError("Give at least one label to match.", "labels")
        chosen, field_name = _match_labels(devices, selector.labels), "labels"
    elif selector.kind == TargetKind.DECISION:
        chosen, field_name = _decision_devices(devices, selector), "decision"
    else:
        raise DeploymentError(f"Unknown target kind {selector.kind!r}.", "target_kind")
    if not chosen:
        raise DeploymentError("These targets match no device.", field_name)
    return sorted(chosen, key=lambda device: (device.name, str(device.pk)))


def _match_labels(devices: QuerySet[Device], labels: Mapping[str, str]) -> list[Device]:
    if connection.vendor == "postgresql":
        return list(devices.filter(labels__contains=dict(labels)))
    # SQLite has no JSON containment; the embedded setup's fleets are small.
    return [
        device
        for device in devices
        if all(device.labels.get(key) == value for key, value in labels.items())
    ]


def _decision_devices(devices: QuerySet[Device], selector: TargetSelector) -> list[Device]:
    decision = (
        Decision.objects.select_related("solution").filter(pk=selector.decision).first()
        if selector.decision
        else None
    )
    if decision is None:
        raise DeploymentError("No such decision.", "decision")
    if decision.status != DecisionStatus.APPROVED:
        raise DeploymentError(
            f"The decision is {decision.status}; only an approved one is deployed.", "decision"
        )
    assignment: dict[str, str] = decision.solution.assignment
    unknown = sorted(set(selector.tasks) - set(assignment))
    if unknown:
        raise DeploymentError(f"The decision places no task {', '.join(unknown)}.", "tasks")
    tasks = selector.tasks or list(assignment)
    device_ids = {assignment[task] for task in tasks}
    return list(devices.filter(pk__in=device_ids))


def _refuse_busy(devices: Sequence[Device]) -> None:
    busy = (
        DeploymentTarget.objects.filter(
            device__in=devices, deployment__status__in=OPEN_DEPLOYMENT_STATUSES
        )
        .select_related("device", "deployment")
        .order_by("device__name")
    )
    if busy:
        names = ", ".join(f"{target.device.name} ({target.deployment.name})" for target in busy[:5])
        raise DeploymentError(
            f"Already in a rollout that is not finished: {names}. Wait for it, or abort it.",
            "targets",
        )


# --- create, pause, resume, abort -------------------------------------------------------
def _checked_policy(policy: RolloutPolicy) -> RolloutPolicy:
    for name in ("canary_percent", "max_failed_percent"):
        if not 0 <= getattr(policy, name) <= 100:
            raise DeploymentError("Must be between 0 and 100.", name)
    if not 1 <= policy.batch_percent <= 100:
        raise DeploymentError("Must be between 1 and 100.", "batch_percent")
    if policy.device_timeout_s < 1:
        raise DeploymentError("Must be at least 1 second.", "device_timeout_s")
    if policy.latency_budget_ms is not None and not policy.latency_budget_ms > 0:
        raise DeploymentError("Must be a positive number of milliseconds.", "latency_budget_ms")
    return policy


@transaction.atomic
def create_deployment(
    *,
    model: ModelArtifact,
    variant: Variant | None,
    selector: TargetSelector,
    policy: RolloutPolicy,
    created_by: Any,
    name: str = "",
) -> Deployment:
    """Create a deployment and release its first phase at once (creating is approving)."""
    if variant is not None and variant.model_id != model.pk:
        raise DeploymentError("The variant is not a variant of this model.", "variant")
    policy = _checked_policy(policy)
    artifact = artifact_of(model, variant)
    devices = resolve_targets(selector)
    # Lock the devices so that two deployments cannot claim one device at once.
    list(Device.objects.select_for_update().filter(pk__in=[d.pk for d in devices]).order_by("pk"))
    _refuse_busy(devices)
    phases = phase_of_each(len(devices), policy.canary_percent, policy.batch_percent)
    deployment = Deployment.objects.create(
        name=name.strip() or _default_name(model, variant, selector, len(devices)),
        model=model,
        variant=variant,
        target_kind=selector.kind,
        target_spec=selector.spec(),
        canary_percent=policy.canary_percent,
        batch_percent=policy.batch_percent,
        max_failed_percent=policy.max_failed_percent,
        device_timeout_s=policy.device_timeout_s,
        latency_budget_ms=policy.latency_budget_ms,
        phase_count=max(phases) + 1,
        created_by=created_by if created_by and created_by.is_authenticated else None,
    )
    deployment.manifest = _sign(ManifestKind.INSTALL, deployment, artifact)
    deployment.save(update_fields=["manifest"])
    DeploymentTarget.objects.bulk_create(
        DeploymentTarget(deployment=deployment, device=device, phase=phase)
        for device, phase in zip(devices, phases, strict=True)
    )
    _release_phase(deployment, 0)
    _announce(deployment)
    return deployment


def _default_name(
    model: ModelArtifact, variant: Variant | None, selector: TargetSelector, count: int
) -> str:
    what = f"{model.name} {model.version}" + (f" {variant.name}" if variant else "")
    return f"{what} to {count} device{'s' if count != 1 else ''} ({selector.kind})"


def _locked(deployment: Deployment) -> Deployment:
    return (
        Deployment.objects.select_for_update(of=("self",))
        .select_related("manifest")
        .get(pk=deployment.pk)
    )


@transaction.atomic
def pause_deployment(deployment: Deployment) -> Deployment:
    """Release no further phase; devices already ordered carry on."""
    deployment = _locked(deployment)
    if deployment.status != DeploymentStatus.RUNNING:
        raise DeploymentConflict(f"The rollout is {deployment.status}; only a running one pauses.")
    deployment.status = DeploymentStatus.PAUSED
    deployment.save(update_fields=["status"])
    _announce(deployment)
    return deployment


@transaction.atomic
def resume_deployment(deployment: Deployment) -> Deployment:
    deployment = _locked(deployment)
    if deployment.status != DeploymentStatus.PAUSED:
        raise DeploymentConflict(f"The rollout is {deployment.status}; only a paused one resumes.")
    deployment.status = DeploymentStatus.RUNNING
    deployment.save(update_fields=["status"])
    _advance(deployment)
    _announce(deployment)
    return deployment


@transaction.atomic
def abort_deployment(deployment: Deployment, *, by: Any) -> Deployment:
    """Stop the rollout and order every released device back to what it ran before."""
    deployment = _locked(deployment)
    if deployment.status not in (DeploymentStatus.RUNNING, DeploymentStatus.PAUSED):
        raise DeploymentConflict(
            f"The rollout is {deployment.status}; only a running or paused one aborts."
        )
    who = getattr(by, "username", "") or "an operator"
    _roll_back(deployment, f"Aborted by {who}.")
    _announce(deployment)
    return deployment


# --- phases -----------------------------------------------------------------------------
def _release_phase(deployment: Deployment, phase: int) -> None:
    now = timezone.now()
    targets = list(
        deployment.targets.select_for_update().filter(phase=phase, state=TargetState.PENDING)
    )
    installed = dict(
        InstalledModel.objects.filter(device__in=[t.device_id for t in targets]).values_list(
            "device_id", "manifest_id"
        )
    )
    for target in targets:
        target.state = TargetState.ORDERED
        target.previous_manifest_id = installed.get(target.device_id)
        target.released_at = target.updated_at = now
        target.deadline_at = now + timedelta(seconds=deployment.device_timeout_s)
    DeploymentTarget.objects.bulk_update(
        targets, ["state", "previous_manifest", "released_at", "updated_at", "deadline_at"]
    )
    deployment.phase = phase
    deployment.save(update_fields=["phase"])
    assert deployment.manifest is not None
    _order_devices(deployment, deployment.manifest, [target.device_id for target in targets])
    _announce_targets(targets)


def _advance(deployment: Deployment) -> None:
    """Abort on too many failures, release the next phase, or finish; `deployment` locked."""
    released = deployment.targets.exclude(state__in=[TargetState.PENDING, TargetState.SKIPPED])
    counts = released.aggregate(
        released=Count("pk"),
        failed=Count("pk", filter=Q(state=TargetState.FAILED)),
        unsettled=Count("pk", filter=~Q(state__in=SETTLED_STATES)),
        rolling_back=Count("pk", filter=Q(state=TargetState.ROLLING_BACK)),
    )
    if deployment.status == DeploymentStatus.ROLLING_BACK:
        if counts["rolling_back"] == 0:
            _finish(deployment, DeploymentStatus.ROLLED_BACK)
        return
    if deployment.status not in (DeploymentStatus.RUNNING, DeploymentStatus.PAUSED):
        return
    if failures_exceed(counts["failed"], counts["released"], deployment.max_failed_percent):
        _roll_back(
            deployment,
            f"{counts['failed']} of {counts['released']} devices failed, above the "
            f"threshold of {deployment.max_failed_percent}%: rolled back automatically.",
        )
    elif counts["unsettled"] == 0 and deployment.status == DeploymentStatus.RUNNING:
        if deployment.phase + 1 < deployment.phase_count:
            _release_phase(deployment, deployment.phase + 1)
        else:
            _finish(deployment, DeploymentStatus.SUCCEEDED)


def _finish(deployment: Deployment, status: str, reason: str = "") -> None:
    deployment.status = status
    deployment.finished_at = timezone.now()
    if reason:
        deployment.ended_reason = reason
    deployment.save(update_fields=["status", "finished_at", "ended_reason"])


def _roll_back(deployment: Deployment, reason: str) -> None:
    """Order every released device back to its previous model; skip the unreleased ones."""
    now = timezone.now()
    deployment.status = DeploymentStatus.ROLLING_BACK
    deployment.ended_reason = reason
    deployment.save(update_fields=["status", "ended_reason"])
    skipped = deployment.targets.filter(state=TargetState.PENDING)
    _announce_targets(list(skipped))
    skipped.update(state=TargetState.SKIPPED, updated_at=now)
    released = list(
        deployment.targets.select_for_update(of=("self",))
        .exclude(state__in=[TargetState.SKIPPED, TargetState.PENDING])
        .select_related("previous_manifest")
    )
    # One rollback manifest per distinct previous model; a failed device gets the order
    # too (its agent restored its previous model itself; the order confirms it and
    # replaces the install order it still holds), but counts as failed, not rolled back.
    by_previous: dict[int | None, list[DeploymentTarget]] = {}
    for target in released:
        by_previous.setdefault(target.previous_manifest_id, []).append(target)
    for targets in by_previous.values():
        previous = targets[0].previous_manifest
        manifest = (
            _resigned(previous, ManifestKind.ROLLBACK, deployment)
            if previous is not None
            else _sign(ManifestKind.ROLLBACK, deployment, None)
        )
        _order_devices(deployment, manifest, [target.device_id for target in targets])
    rolling = [target for target in released if target.state != TargetState.FAILED]
    for target in rolling:
        target.state = TargetState.ROLLING_BACK
        target.updated_at = now
        target.deadline_at = now + timedelta(seconds=deployment.device_timeout_s)
    DeploymentTarget.objects.bulk_update(rolling, ["state", "updated_at", "deadline_at"])
    _announce_targets(rolling)
    if not rolling:
        _finish(deployment, DeploymentStatus.ROLLED_BACK)


# --- agent reports ----------------------------------------------------------------------
@transaction.atomic
def record_model_status(device: Device, report: StatusReport) -> DeploymentTarget:
    """Apply an agent's report to its part in the rollout, then move the rollout on."""
    if report.state not in AGENT_STATES:
        raise DeploymentError(f"Unknown state {report.state!r}.", "state")
    deployment = Deployment.objects.select_for_update().filter(pk=report.deployment_id).first()
    target = (
        deployment.targets.select_for_update().filter(device=device).first() if deployment else None
    )
    if deployment is None or target is None:
        raise DeploymentError("Not a deployment of this device.", "deployment_id")
    manifest = deployment.manifests.filter(pk=report.version).first()
    if manifest is None:
        raise DeploymentError("Not a manifest version of this deployment.", "version")
    if report.state in ("active", "failed"):  # what a device serves changes only then
        _record_installed(device, report)
    if _apply(target, manifest.kind, report):
        target.updated_at = timezone.now()
        target.save()
        _announce_targets([target])
        if target.state not in IN_FLIGHT_STATES:  # progress alone moves nothing on
            _advance(deployment)
            _announce(deployment)
    return target


def _apply(target: DeploymentTarget, kind: str, report: StatusReport) -> bool:
    """Move the target as the report says, if the report still concerns it."""
    now = timezone.now()
    if kind == ManifestKind.INSTALL and target.state in IN_FLIGHT_STATES:
        if report.state in ("downloading", "verifying"):
            target.state, target.progress = report.state, report.progress
        elif report.state == "active":
            target.state, target.progress, target.finished_at = TargetState.ACTIVE, 1.0, now
        else:
            _fail(target, report.reason, report.detail, now)
        return True
    if kind == ManifestKind.ROLLBACK and target.state == TargetState.ROLLING_BACK:
        if report.state == "active":
            target.state, target.finished_at = TargetState.ROLLED_BACK, now
        elif report.state == "failed":
            _fail(target, report.reason, f"The rollback failed: {report.detail}", now)
        return report.state in ("active", "failed")
    return False


def _fail(target: DeploymentTarget, reason: str, detail: str, now: datetime) -> None:
    target.state, target.reason, target.detail = TargetState.FAILED, reason[:40], detail
    target.finished_at = now


def _record_installed(device: Device, report: StatusReport) -> None:
    sha = report.active_sha256 or ""
    manifest = (
        SignedManifest.objects.filter(pk=report.active_version, sha256=sha).first()
        if sha and report.active_version is not None
        else None
    )
    InstalledModel.objects.update_or_create(
        device=device,
        defaults={
            "manifest": manifest,
            "sha256": sha,
            "version": report.active_version if sha else None,
            "since": timezone.now(),
        },
    )


# --- the sweeper ------------------------------------------------------------------------
def sweep_rollouts(now: datetime | None = None) -> int:
    """Fail the devices past their deadline, move their rollouts on, renew old orders.

    Each overdue target is claimed with a conditional UPDATE, so sweepers running at once
    never fail one device twice. Returns how many devices timed out.
    """
    now = now or timezone.now()
    overdue = DeploymentTarget.objects.filter(
        deadline_at__lt=now,
        state__in=[*IN_FLIGHT_STATES, TargetState.ROLLING_BACK],
        deployment__status__in=OPEN_DEPLOYMENT_STATUSES,
    ).values_list("pk", "deployment_id", "state")
    timed_out: dict[uuid.UUID, list[int]] = {}
    for pk, deployment_id, state in overdue:
        with transaction.atomic():
            deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
            claimed = DeploymentTarget.objects.filter(pk=pk, state=state, deadline_at__lt=now)
            waited = deployment.device_timeout_s
            if claimed.update(
                state=TargetState.FAILED,
                reason="timeout",
                detail=f"No confirmation within {waited} s (last state: {state}).",
                updated_at=now,
                finished_at=now,
            ):
                timed_out.setdefault(deployment_id, []).append(pk)
    for deployment_id, target_ids in timed_out.items():
        with transaction.atomic():
            deployment = _locked(Deployment(pk=deployment_id))
            _advance(deployment)
            _announce(deployment)
            _announce_targets(DeploymentTarget.objects.filter(pk__in=target_ids))
    renew_expiring_orders(now)
    _time_out_profilings(now)
    return sum(len(ids) for ids in timed_out.values())


def renew_expiring_orders(now: datetime | None = None) -> int:
    """Re-sign the orders devices hold in the last half of their validity, so that an
    agent that reinstalls (a wiped disk, a replaced device) never finds an expired one."""
    now = now or timezone.now()
    horizon = now + timedelta(seconds=settings.TRIAD_MANIFEST_TTL_S / 2)
    held = _held_model_orders()
    renewed = 0
    expiring = SignedManifest.objects.filter(pk__in=held, expires_at__lt=horizon)
    for manifest in expiring.select_related("deployment"):
        if manifest.deployment is None:
            continue
        with transaction.atomic():
            deployment = _locked(manifest.deployment)
            fresh = _resigned(manifest, manifest.kind, deployment)
            if deployment.manifest_id == manifest.pk:
                deployment.manifest = fresh
                deployment.save(update_fields=["manifest"])
            _order_devices(deployment, fresh, held[manifest.pk])
            renewed += 1
    return renewed


def _held_model_orders() -> dict[int, list[uuid.UUID]]:
    """Manifest version -> the devices whose model order carries it (one query, reading
    only the version out of each order)."""
    rows = Device.objects.filter(desired_model__isnull=False).values_list(
        "pk", "desired_model__manifest__signed__version"
    )
    held: dict[int, list[uuid.UUID]] = {}
    for device_id, version in rows:
        held.setdefault(int(version), []).append(device_id)
    return held


# --- hardware-in-the-loop profiling ---------------------------------------------------
MAX_PROFILE_RUNS = 1000


@dataclass(frozen=True)
class ProfileReport:
    """An agent's profiling result (docs/rollouts.md, "Profiling"), as the API validated it."""

    run_id: uuid.UUID
    state: str  # "measured" or "failed"
    p50_ms: float | None = None
    p95_ms: float | None = None
    runs: int = 0
    reason: str = ""
    detail: str = ""


@transaction.atomic
def start_profiling(
    *,
    model: ModelArtifact,
    variant: Variant | None,
    devices: Sequence[uuid.UUID],
    created_by: Any,
    runs: int = 50,
    timeout_s: int = 600,
) -> ProfilingRun:
    """Ask the agents of `devices` to time `runs` inferences of the model on their hardware."""
    if variant is not None and variant.model_id != model.pk:
        raise DeploymentError("The variant is not a variant of this model.", "variant")
    if not 1 <= runs <= MAX_PROFILE_RUNS:
        raise DeploymentError(f"Must be between 1 and {MAX_PROFILE_RUNS}.", "runs")
    if timeout_s < 1:
        raise DeploymentError("Must be at least 1 second.", "timeout_s")
    artifact = artifact_of(model, variant)
    if not devices:
        raise DeploymentError("Choose at least one device.", "devices")
    chosen = resolve_targets(TargetSelector(kind=TargetKind.DEVICES, devices=devices))
    locked = Device.objects.select_for_update().filter(pk__in=[d.pk for d in chosen])
    busy = sorted(device.name for device in locked.order_by("pk") if device.desired_profile)
    if busy:
        raise DeploymentError(
            f"Already profiling something: {', '.join(busy[:5])}. Wait for it to finish.",
            "devices",
        )
    run = ProfilingRun.objects.create(
        model=model,
        variant=variant,
        manifest=_sign(ManifestKind.PROFILE, None, artifact),
        runs=runs,
        timeout_s=timeout_s,
        created_by=created_by if created_by and created_by.is_authenticated else None,
    )
    deadline = timezone.now() + timedelta(seconds=timeout_s)
    ProfilingTarget.objects.bulk_create(
        ProfilingTarget(run=run, device=device, deadline_at=deadline) for device in chosen
    )
    ids = [device.pk for device in chosen]
    Device.objects.filter(pk__in=ids).update(desired_profile=_profile_order(run))
    transaction.on_commit(lambda: events.nudge_agents(ids))
    return run


def _profile_order(run: ProfilingRun) -> dict[str, Any]:
    """The `desired_state.profile` a device finds in its heartbeat answers."""
    return {
        "run_id": str(run.pk),
        "manifest": run.manifest.document(),
        "artifact_url": ARTIFACT_URL.format(sha256=run.manifest.sha256),
        "runs": run.runs,
        "key_rotations": keyring().rotations(),
    }


@transaction.atomic
def record_profile_result(device: Device, report: ProfileReport) -> ProfilingTarget:
    """Store what an agent measured (or why it could not), and withdraw its order."""
    run = ProfilingRun.objects.select_for_update().filter(pk=report.run_id).first()
    target = run.targets.select_for_update().filter(device=device).first() if run else None
    if run is None or target is None:
        raise DeploymentError("Not a profiling run of this device.", "run_id")
    if target.state != ProfilingState.ORDERED:
        return target  # a resent report: the first one counted
    target.finished_at = timezone.now()
    if report.state == ProfilingState.MEASURED:
        if report.p50_ms is None or report.p95_ms is None:
            raise DeploymentError("Required when the state is measured.", "p50_ms")
        target.state, target.p50_ms, target.p95_ms = report.state, report.p50_ms, report.p95_ms
        MeasuredLatency.objects.create(
            model_id=run.model_id,
            variant_id=run.variant_id,
            device=device,
            p50_ms=report.p50_ms,
            p95_ms=report.p95_ms,
            runs=report.runs,
        )
    else:
        target.state, target.reason, target.detail = (
            ProfilingState.FAILED,
            report.reason,
            report.detail,
        )
    target.save()
    _withdraw_profile_order(run, [device.pk])
    _finish_profiling_if_done(run)
    return target


def _withdraw_profile_order(run: ProfilingRun, device_ids: Sequence[uuid.UUID]) -> None:
    Device.objects.filter(pk__in=device_ids, desired_profile__run_id=str(run.pk)).update(
        desired_profile=None
    )


def _finish_profiling_if_done(run: ProfilingRun) -> None:
    if not run.targets.filter(state=ProfilingState.ORDERED).exists():
        run.finished, run.finished_at = True, timezone.now()
        run.save(update_fields=["finished", "finished_at"])


def _time_out_profilings(now: datetime) -> None:
    overdue = ProfilingTarget.objects.filter(state=ProfilingState.ORDERED, deadline_at__lt=now)
    for target in overdue.select_related("run"):
        with transaction.atomic():
            run = ProfilingRun.objects.select_for_update().get(pk=target.run_id)
            claimed = ProfilingTarget.objects.filter(pk=target.pk, state=ProfilingState.ORDERED)
            if claimed.update(
                state=ProfilingState.FAILED,
                reason="timeout",
                detail=f"No result within {run.timeout_s} s.",
                finished_at=now,
            ):
                _withdraw_profile_order(run, [target.device_id])
                _finish_profiling_if_done(run)


# --- keys -------------------------------------------------------------------------------
@transaction.atomic
def rotate_signing_key() -> str:
    """Rotate the key, re-sign every order devices hold with the new one, and send them
    the rotation chain with it: agents adopt the new key and refuse the old one."""
    new_key = keyring().rotate()
    held = _held_model_orders()
    for manifest in SignedManifest.objects.filter(pk__in=held).select_related("deployment"):
        _store_signature(manifest, manifest.signed)
        if manifest.deployment is not None:
            _order_devices(manifest.deployment, manifest, held[manifest.pk])
    for run in ProfilingRun.objects.filter(finished=False).select_related("manifest"):
        _store_signature(run.manifest, run.manifest.signed)
        holders = Device.objects.filter(desired_profile__run_id=str(run.pk))
        holders.update(desired_profile=_profile_order(run))
    return new_key.key_id


# --- live events ------------------------------------------------------------------------
def _announce(deployment: Deployment) -> None:
    transaction.on_commit(lambda: events.publish_deployment(deployment.pk))


def _announce_targets(targets: Iterable[DeploymentTarget]) -> None:
    ids = [target.pk for target in targets]
    if ids:
        transaction.on_commit(lambda: events.publish_targets(ids))
