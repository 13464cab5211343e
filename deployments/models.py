"""Rollouts: signed manifests, deployments of a model to devices, and each device's part.

Every write goes through `deployments.actions`. What a device should run travels as an
order in `Device.desired_model` (see docs/rollouts.md); what it runs is `InstalledModel`,
as its agent reports it.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from devices.models import Device
from models_hub.models import ModelArtifact, Variant


class ManifestKind(models.TextChoices):
    INSTALL = "install", "Install the deployment's artifact"
    ROLLBACK = "rollback", "Restore what the device ran before"
    PROFILE = "profile", "Measure the artifact's latency, not install it"


class SignedManifest(models.Model):
    """A manifest the control plane signed. Its id is the manifest's `version`: ids only
    grow, so every manifest signed later carries a higher version (agents refuse lower ones).

    `sha256` is empty for a "run no model" order (a rollback on a device that ran nothing).
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=8, choices=ManifestKind.choices)
    deployment = models.ForeignKey(
        "Deployment", on_delete=models.CASCADE, related_name="manifests", null=True
    )
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    file_name = models.CharField(max_length=255, blank=True, help_text="In default storage.")
    signed = models.JSONField(default=dict, help_text="The signed body, as signed.")
    signatures = models.JSONField(default=list)
    key_id = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"manifest v{self.id} ({self.kind})"

    @property
    def version(self) -> int:
        return self.id

    def document(self) -> dict[str, Any]:
        return {"signed": self.signed, "signatures": self.signatures}


class DeploymentStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SUCCEEDED = "succeeded", "Succeeded"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"


OPEN_DEPLOYMENT_STATUSES = (
    DeploymentStatus.RUNNING,
    DeploymentStatus.PAUSED,
    DeploymentStatus.ROLLING_BACK,
)


class TargetKind(models.TextChoices):
    DEVICES = "devices", "A list of devices"
    TIER = "tier", "Every device of a tier"
    LABELS = "labels", "Devices whose labels match a selector"
    DECISION = "decision", "The devices of an approved scheduling decision"


class Deployment(models.Model):
    """A model (the original or a variant) rolled out to devices in phases.

    Phase 0 is the canary (`canary_percent` of the targets, at least one when the percent
    is not 0); then batches of `batch_percent`. A phase is released when the one before
    it has settled. When more than `max_failed_percent` of the devices released so far
    have failed, the rollout aborts and every released device is ordered back to what it
    ran before.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    model = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="deployments")
    variant = models.ForeignKey(
        Variant, on_delete=models.PROTECT, related_name="deployments", null=True, blank=True
    )
    manifest = models.ForeignKey(
        SignedManifest, on_delete=models.PROTECT, related_name="+", null=True
    )
    target_kind = models.CharField(max_length=8, choices=TargetKind.choices)
    target_spec = models.JSONField(help_text="What the operator asked for, as asked.")
    canary_percent = models.PositiveSmallIntegerField(default=10)
    batch_percent = models.PositiveSmallIntegerField(default=50)
    max_failed_percent = models.PositiveSmallIntegerField(default=0)
    device_timeout_s = models.PositiveIntegerField(default=600)
    latency_budget_ms = models.FloatField(null=True, blank=True)
    status = models.CharField(
        max_length=12, choices=DeploymentStatus.choices, default=DeploymentStatus.RUNNING
    )
    phase = models.PositiveSmallIntegerField(default=0, help_text="The phase released last.")
    phase_count = models.PositiveSmallIntegerField(default=1)
    ended_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deployments",
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_DEPLOYMENT_STATUSES


class TargetState(models.TextChoices):
    PENDING = "pending", "Pending"
    ORDERED = "ordered", "Ordered"
    DOWNLOADING = "downloading", "Downloading"
    VERIFYING = "verifying", "Verifying"
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"
    SKIPPED = "skipped", "Skipped"


IN_FLIGHT_STATES = (TargetState.ORDERED, TargetState.DOWNLOADING, TargetState.VERIFYING)
SETTLED_STATES = (TargetState.ACTIVE, TargetState.FAILED)


class DeploymentTarget(models.Model):
    """One device's part in a deployment: its phase, its state, what it ran before."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="targets")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="deployment_targets")
    phase = models.PositiveSmallIntegerField()
    state = models.CharField(
        max_length=12, choices=TargetState.choices, default=TargetState.PENDING
    )
    progress = models.FloatField(default=0.0, help_text="Download progress, 0 to 1.")
    reason = models.CharField(max_length=40, blank=True, help_text="The failure's code.")
    detail = models.TextField(blank=True)
    # What the device ran when its phase was released (null: nothing), for the rollback.
    previous_manifest = models.ForeignKey(
        SignedManifest, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["deployment", "phase", "device__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "device"], name="one_target_per_deployment_and_device"
            )
        ]
        indexes = [models.Index(fields=["state", "deadline_at"], name="target_deadline_idx")]

    def __str__(self) -> str:
        return f"{self.device_id} in {self.deployment_id} ({self.state})"


class InstalledModel(models.Model):
    """What a device's agent last said it serves (null manifest: nothing, or unknown to us)."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="installed_model")
    manifest = models.ForeignKey(
        SignedManifest, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    sha256 = models.CharField(max_length=64, blank=True)
    version = models.PositiveBigIntegerField(null=True, blank=True)
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(sha256="") | Q(version__isnull=False), name="installed_has_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.device_id} runs {self.sha256[:12] or 'nothing'}"


class ProfilingRun(models.Model):
    """Hardware-in-the-loop profiling: chosen agents download a model or variant (signed
    and verified as for a rollout), time `runs` inferences on their own hardware without
    installing it, and report the latency; each result becomes a `MeasuredLatency`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.ForeignKey(ModelArtifact, on_delete=models.CASCADE, related_name="profilings")
    variant = models.ForeignKey(
        Variant, on_delete=models.CASCADE, null=True, blank=True, related_name="profilings"
    )
    manifest = models.ForeignKey(SignedManifest, on_delete=models.PROTECT, related_name="+")
    runs = models.PositiveIntegerField(default=50)
    timeout_s = models.PositiveIntegerField(default=600)
    finished = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="profiling_runs",
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"profiling of {self.variant or self.model}"


class ProfilingState(models.TextChoices):
    ORDERED = "ordered", "Ordered"
    MEASURED = "measured", "Measured"
    FAILED = "failed", "Failed"


class ProfilingTarget(models.Model):
    run = models.ForeignKey(ProfilingRun, on_delete=models.CASCADE, related_name="targets")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="profilings")
    state = models.CharField(
        max_length=8, choices=ProfilingState.choices, default=ProfilingState.ORDERED
    )
    p50_ms = models.FloatField(null=True, blank=True)
    p95_ms = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=40, blank=True)
    detail = models.TextField(blank=True)
    deadline_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "device__name"]
        constraints = [
            models.UniqueConstraint(fields=["run", "device"], name="one_profiling_per_device")
        ]

    def __str__(self) -> str:
        return f"{self.device_id} in profiling {self.run_id} ({self.state})"
