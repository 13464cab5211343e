"""Every change to the fleet goes through one of these functions, each one transaction.

Live events are sent with `transaction.on_commit`, so the browser never sees a change
that was rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from devices import events
from devices.credentials import (
    hash_secret,
    new_device_credential,
    new_enrollment_token,
)
from devices.models import (
    Device,
    DeviceCredential,
    DeviceStatus,
    EnrollmentToken,
    NetworkLink,
    StatusChange,
    Telemetry,
    Tier,
)


class FleetError(Exception):
    """A request the fleet refuses. `field` names the input at fault, when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class EnrollmentRejected(FleetError):
    pass


class DeviceRetired(FleetError):
    pass


@dataclass(frozen=True)
class HardwareProfile:
    cpu_cores: int
    memory_mb: int
    gflops: float
    power_idle_w: float
    power_busy_w: float
    accelerator: str = ""
    cost_per_hour: float = 0.0


@dataclass(frozen=True)
class LinkReport:
    """A link measured from the reporting device to a device (by id) or a tier."""

    to: str
    bandwidth_mbps: float
    rtt_ms: float


@dataclass
class HeartbeatResult:
    device: Device
    accepted: int
    desired_state: dict[str, Any] = field(default_factory=dict)


def desired_state(device: Device) -> dict[str, Any]:
    return desired_state_of(
        device.heartbeat_interval_s, device.desired_model, device.desired_profile
    )


def desired_state_of(
    heartbeat_interval_s: int, model: Any | None, profile: Any | None
) -> dict[str, Any]:
    """The heartbeat answer's `desired_state` (docs/agent-protocol.md, docs/rollouts.md)."""
    state: dict[str, Any] = {"heartbeat_interval_s": heartbeat_interval_s}
    if model is not None:
        state["model"] = model
    if profile is not None:
        state["profile"] = profile
    return state


# --- enrollment tokens --------------------------------------------------------------------
@transaction.atomic
def create_enrollment_token(
    *, created_by: Any, name: str = "", max_uses: int = 1, ttl: timedelta = timedelta(hours=1)
) -> tuple[EnrollmentToken, str]:
    """Create a token; the plain secret is returned once and never stored."""
    secret = new_enrollment_token()
    token = EnrollmentToken.objects.create(
        name=name,
        prefix=secret[:12],
        token_hash=hash_secret(secret),
        created_by=created_by if created_by and created_by.is_authenticated else None,
        expires_at=timezone.now() + ttl,
        max_uses=max_uses,
    )
    return token, secret


@transaction.atomic
def revoke_enrollment_token(token: EnrollmentToken) -> EnrollmentToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


# --- enrollment and credentials -------------------------------------------------------
@transaction.atomic
def enroll_device(
    *,
    token: str,
    name: str,
    tier: str,
    hardware: HardwareProfile,
    labels: dict[str, str] | None = None,
    location: str = "",
) -> tuple[Device, str]:
    """Spend one use of an enrollment token on a new device; return it and its credential."""
    record = _claim_token(token)
    device = Device.objects.create(
        name=name,
        tier=Tier(tier),
        cpu_cores=hardware.cpu_cores,
        memory_mb=hardware.memory_mb,
        gflops=hardware.gflops,
        accelerator=hardware.accelerator,
        power_idle_w=hardware.power_idle_w,
        power_busy_w=hardware.power_busy_w,
        cost_per_hour=hardware.cost_per_hour,
        labels=dict(labels or {}),
        location=location,
        enrolled_with=record,
        heartbeat_interval_s=settings.TRIAD_HEARTBEAT_INTERVAL_S,
    )
    credential = _issue_credential(device)
    transaction.on_commit(lambda: events.publish_device(device))
    return device, credential


def _claim_token(secret: str) -> EnrollmentToken:
    record = (
        EnrollmentToken.objects.select_for_update().filter(token_hash=hash_secret(secret)).first()
    )
    if record is None:
        raise EnrollmentRejected("Unknown enrollment token.", field="token")
    if record.revoked_at is not None:
        raise EnrollmentRejected("Enrollment token has been revoked.", field="token")
    if record.expires_at <= timezone.now():
        raise EnrollmentRejected("Enrollment token has expired.", field="token")
    if record.use_count >= record.max_uses:
        raise EnrollmentRejected("Enrollment token has no uses left.", field="token")
    record.use_count += 1
    record.save(update_fields=["use_count"])
    return record


def _issue_credential(device: Device) -> str:
    credential = new_device_credential(device.id)
    DeviceCredential.objects.create(device=device, key_hash=hash_secret(credential))
    return credential


@transaction.atomic
def rotate_credential(device: Device) -> str:
    """Revoke the device's current credential and issue a new one."""
    Device.objects.select_for_update().get(pk=device.pk)
    _revoke_credentials(device)
    return _issue_credential(device)


def _revoke_credentials(device: Device) -> None:
    DeviceCredential.objects.filter(device=device, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


# --- heartbeats -------------------------------------------------------------------------
@transaction.atomic
def record_heartbeat(
    device_id: uuid.UUID,
    samples: Sequence[dict[str, Any]],
    links: Sequence[LinkReport] = (),
    now: datetime | None = None,
) -> HeartbeatResult:
    """Lock the device row, refresh its liveness, and store the samples in bulk."""
    now = now or timezone.now()
    device = Device.objects.select_for_update().get(pk=device_id)
    if device.status == DeviceStatus.RETIRED:
        raise DeviceRetired("Device is retired.")
    rows = [Telemetry(device=device, received_at=now, **sample) for sample in samples]
    _refresh_liveness(device, rows, now)
    # A sample the agent resends (its answer was lost) is stored once.
    Telemetry.objects.bulk_create(rows, ignore_conflicts=True)
    if links:
        _store_links(device, links, now)
    transaction.on_commit(lambda: events.publish_device(device, rows))
    return HeartbeatResult(device=device, accepted=len(rows), desired_state=desired_state(device))


LATEST_READINGS = ("cpu_percent", "memory_percent", "power_w", "energy_j")


def _refresh_liveness(device: Device, rows: list[Telemetry], now: datetime) -> None:
    fields = ["last_heartbeat_at", "offline_after"]
    device.last_heartbeat_at = now
    device.offline_after = now + timedelta(
        seconds=device.heartbeat_interval_s * settings.TRIAD_OFFLINE_AFTER_MISSED
    )
    latest = max(rows, key=lambda row: row.ts, default=None)
    for reading in LATEST_READINGS:
        # A sample that leaves a reading out keeps the previous one on show.
        value = getattr(latest, reading, None)
        if value is not None:
            setattr(device, f"last_{reading}", value)
            fields.append(f"last_{reading}")
    if device.status != DeviceStatus.ONLINE:
        _record_flip(device, DeviceStatus.ONLINE, "heartbeat received", now)
        fields.append("status")
    device.save(update_fields=fields)


def _record_flip(device: Device, status: str, reason: str, now: datetime) -> None:
    StatusChange.objects.create(
        device=device, from_status=device.status, to_status=status, at=now, reason=reason
    )
    device.status = status


def _store_links(device: Device, links: Sequence[LinkReport], now: datetime) -> None:
    for link in links:
        target: dict[str, Any]
        if link.to in Tier.values:
            target = {"dst_device": None, "dst_tier": link.to}
        else:
            target = {"dst_device_id": uuid.UUID(link.to), "dst_tier": ""}
        NetworkLink.objects.update_or_create(
            src_device=device,
            src_tier="",
            **target,
            defaults={
                "bandwidth_mbps": link.bandwidth_mbps,
                "rtt_ms": link.rtt_ms,
                "source": NetworkLink.Source.AGENT,
                "updated_at": now,
            },
        )


# --- operator actions -----------------------------------------------------------------
@transaction.atomic
def retire_device(device: Device, reason: str = "retired by operator") -> Device:
    """Retire a device for good: its credentials stop working and it leaves the fleet."""
    device = Device.objects.select_for_update().get(pk=device.pk)
    if device.status != DeviceStatus.RETIRED:
        _record_flip(device, DeviceStatus.RETIRED, reason, timezone.now())
        device.offline_after = None
        device.save(update_fields=["status", "offline_after"])
        _revoke_credentials(device)
        transaction.on_commit(lambda: events.publish_device(device))
    return device


@transaction.atomic
def save_link(link: NetworkLink) -> NetworkLink:
    """Create or edit a link on an operator's behalf."""
    link.source = NetworkLink.Source.OPERATOR
    link.updated_at = timezone.now()
    link.full_clean()
    link.save()
    return link


@transaction.atomic
def delete_link(link: NetworkLink) -> None:
    link.delete()


# --- offline sweep ----------------------------------------------------------------------
def mark_overdue_devices_offline(now: datetime | None = None) -> list[uuid.UUID]:
    """Flip online devices whose `offline_after` has passed to offline.

    Each row is claimed with a conditional UPDATE, so when several workers sweep at once
    exactly one of them flips (and records, and announces) each device.
    """
    now = now or timezone.now()
    overdue = Device.objects.filter(status=DeviceStatus.ONLINE, offline_after__lt=now)
    flipped = []
    for device_id in overdue.values_list("id", flat=True)[:1000]:
        if _claim_offline(device_id, now):
            flipped.append(device_id)
    return flipped


@transaction.atomic
def _claim_offline(device_id: uuid.UUID, now: datetime) -> bool:
    claimed = Device.objects.filter(
        pk=device_id, status=DeviceStatus.ONLINE, offline_after__lt=now
    ).update(status=DeviceStatus.OFFLINE)
    if not claimed:
        return False
    StatusChange.objects.create(
        device_id=device_id,
        from_status=DeviceStatus.ONLINE,
        to_status=DeviceStatus.OFFLINE,
        at=now,
        reason="missed heartbeats",
    )
    device = Device.objects.get(pk=device_id)
    transaction.on_commit(lambda: events.publish_device(device))
    return True
