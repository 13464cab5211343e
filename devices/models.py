"""The fleet: devices, how they enroll and authenticate, what they report."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Tier(models.TextChoices):
    CLOUD = "cloud", "Cloud"
    EDGE = "edge", "Edge"
    END = "end", "End"


class DeviceStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    RETIRED = "retired", "Retired"


class EnrollmentToken(models.Model):
    """A secret that lets agents enroll: limited in uses and time; only its hash is kept."""

    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="enrollment_tokens",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    use_count = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        if self.use_count >= self.max_uses:
            return "used up"
        return "active"


class Device(models.Model):
    """A machine in the fleet, with the hardware profile its agent measured."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    tier = models.CharField(max_length=8, choices=Tier.choices)
    status = models.CharField(
        max_length=8, choices=DeviceStatus.choices, default=DeviceStatus.PENDING
    )
    # Hardware profile, as measured by the agent at enrollment.
    cpu_cores = models.PositiveIntegerField()
    memory_mb = models.PositiveIntegerField()
    gflops = models.FloatField(help_text="Measured float32 matrix-multiply GFLOPS.")
    accelerator = models.CharField(max_length=100, blank=True)
    power_idle_w = models.FloatField()
    power_busy_w = models.FloatField()
    cost_per_hour = models.FloatField(default=0.0)
    labels = models.JSONField(default=dict, blank=True)
    location = models.CharField(max_length=200, blank=True)

    enrolled_with = models.ForeignKey(
        EnrollmentToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    enrolled_at = models.DateTimeField(default=timezone.now)
    heartbeat_interval_s = models.PositiveIntegerField(default=10)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Precomputed at each heartbeat so the sweeper's query is one indexed range scan.
    offline_after = models.DateTimeField(null=True, blank=True)
    # The latest sample, denormalised so the fleet page needs no telemetry query.
    last_cpu_percent = models.FloatField(null=True, blank=True)
    last_memory_percent = models.FloatField(null=True, blank=True)
    last_power_w = models.FloatField(null=True, blank=True)
    last_energy_j = models.FloatField(null=True, blank=True)
    # The model order the agent finds in every heartbeat answer (docs/rollouts.md): written
    # by `deployments.actions`, null while no rollout has ever addressed the device.
    desired_model = models.JSONField(null=True, blank=True)
    # A profiling order (`deployments.ProfilingRun`): time a model here, do not install it.
    desired_profile = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["tier", "name"]
        indexes = [
            models.Index(fields=["status", "offline_after"], name="device_sweep_idx"),
            models.Index(fields=["tier", "status"], name="device_tier_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(power_busy_w__gte=models.F("power_idle_w")),
                name="device_busy_power_at_least_idle",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tier})"


class DeviceCredential(models.Model):
    """An agent's secret. Only its hash is kept; rotating revokes the previous one."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="credentials")
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["device"],
                condition=Q(revoked_at__isnull=True),
                name="one_active_credential_per_device",
            ),
        ]

    def __str__(self) -> str:
        return f"credential of {self.device_id} ({'revoked' if self.revoked_at else 'active'})"


class NetworkLink(models.Model):
    """Measured or configured bandwidth and round-trip time from a device to a device or tier.

    An endpoint is either a device or a whole tier; tier-to-tier rows are the defaults the
    scheduler falls back on when no measurement between two devices exists.
    """

    class Source(models.TextChoices):
        AGENT = "agent", "Reported by agent"
        OPERATOR = "operator", "Set by operator"

    src_device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.CASCADE, related_name="links_out"
    )
    src_tier = models.CharField(max_length=8, choices=Tier.choices, blank=True)
    dst_device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.CASCADE, related_name="links_in"
    )
    dst_tier = models.CharField(max_length=8, choices=Tier.choices, blank=True)
    bandwidth_mbps = models.FloatField()
    rtt_ms = models.FloatField()
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.OPERATOR)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["src_tier", "dst_tier", "updated_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(src_device__isnull=False) & Q(src_tier=""))
                | (Q(src_device__isnull=True) & ~Q(src_tier="")),
                name="link_source_is_device_xor_tier",
            ),
            models.CheckConstraint(
                condition=(Q(dst_device__isnull=False) & Q(dst_tier=""))
                | (Q(dst_device__isnull=True) & ~Q(dst_tier="")),
                name="link_target_is_device_xor_tier",
            ),
            # One link per endpoint pair; spelled per endpoint kind because SQLite cannot
            # treat NULLs as equal in a unique constraint.
            *(
                models.UniqueConstraint(
                    fields=[src, dst],
                    condition=Q(**extra),
                    name=f"one_link_{src}_{dst}",
                    violation_error_message="A link between these endpoints already exists.",
                )
                for src, dst, extra in (
                    ("src_device", "dst_device", {}),
                    ("src_device", "dst_tier", {"dst_device__isnull": True}),
                    ("src_tier", "dst_device", {"src_device__isnull": True}),
                    (
                        "src_tier",
                        "dst_tier",
                        {"src_device__isnull": True, "dst_device__isnull": True},
                    ),
                )
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_label} → {self.target_label}"

    @property
    def source_label(self) -> str:
        return str(self.src_device.name) if self.src_device else f"tier:{self.src_tier}"

    @property
    def target_label(self) -> str:
        return str(self.dst_device.name) if self.dst_device else f"tier:{self.dst_tier}"


class Telemetry(models.Model):
    """One sample reported by an agent."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the (device, ts) unique constraint's index serves device lookups.
    device = models.ForeignKey(
        Device, on_delete=models.CASCADE, related_name="telemetry", db_index=False
    )
    ts = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    cpu_percent = models.FloatField(null=True, blank=True)
    memory_percent = models.FloatField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)
    energy_j = models.FloatField(null=True, blank=True, help_text="Cumulative since agent start.")
    inference_count = models.PositiveIntegerField(null=True, blank=True)
    latency_p50_ms = models.FloatField(null=True, blank=True)
    latency_p95_ms = models.FloatField(null=True, blank=True)
    latency_p99_ms = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["device", "ts"]
        # Agents deliver at least once; a sample is stored once.
        constraints = [models.UniqueConstraint(fields=["device", "ts"], name="one_sample_per_ts")]
        verbose_name_plural = "telemetry"

    def __str__(self) -> str:
        return f"{self.device_id} @ {self.ts.isoformat()}"


class StatusChange(models.Model):
    """A device's status flip, kept as an audit trail."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=8, choices=DeviceStatus.choices)
    to_status = models.CharField(max_length=8, choices=DeviceStatus.choices)
    at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["device", "-at"], name="status_change_device_at_idx")]

    def __str__(self) -> str:
        return f"{self.device_id}: {self.from_status} → {self.to_status}"
