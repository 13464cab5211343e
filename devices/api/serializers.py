"""Serializers for the agent and operator APIs. Every field error names the field."""

from __future__ import annotations

import json
import math
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from devices.models import Device, EnrollmentToken, NetworkLink, StatusChange, Telemetry, Tier


class FiniteFloatField(serializers.FloatField):
    """A float that JSON and the database can both hold: no infinities, no NaN."""

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("Must be a finite number.")
        return value


def _non_negative(**kwargs: Any) -> FiniteFloatField:
    return FiniteFloatField(min_value=0, **kwargs)


def storable_json_problem(value: Any) -> str | None:
    """Why PostgreSQL's jsonb (and our JSON renderer) could not hold `value`, if it could not."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # unpaired surrogates cannot be encoded
    except (ValueError, UnicodeEncodeError):
        return "Must hold only finite numbers and valid text."
    if "\x00" in text or "\\u0000" in text:
        return "Must not contain NUL characters."
    return None


class MetricsField(serializers.DictField):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        metrics = super().to_internal_value(data)
        problem = storable_json_problem(metrics)
        if problem:
            raise serializers.ValidationError(problem)
        return metrics


# --- agent API ----------------------------------------------------------------------------
class HardwareSerializer(serializers.Serializer):
    cpu_cores = serializers.IntegerField(min_value=1, max_value=4096)
    memory_mb = serializers.IntegerField(min_value=1)
    gflops = _non_negative(max_value=1e7)
    accelerator = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )
    power_idle_w = _non_negative(max_value=1e5)
    power_busy_w = _non_negative(max_value=1e5)
    cost_per_hour = _non_negative(required=False, default=0.0, max_value=1e4)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["power_busy_w"] < attrs["power_idle_w"]:
            raise serializers.ValidationError(
                {"power_busy_w": "Busy power must be at least the idle power."}
            )
        return attrs


class LabelsField(serializers.DictField):
    child = serializers.CharField(max_length=200, allow_blank=True)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        labels = super().to_internal_value(data)
        if len(labels) > 50:
            raise serializers.ValidationError("At most 50 labels.")
        for key in labels:
            if not key or len(key) > 100 or "\x00" in key:
                raise serializers.ValidationError(
                    f"Label key {key!r} must be 1 to 100 characters, without NUL."
                )
        return labels


class EnrollRequestSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)
    name = serializers.CharField(max_length=100)
    tier = serializers.ChoiceField(choices=Tier.choices)
    hardware = HardwareSerializer()
    labels = LabelsField(required=False, default=dict)
    location = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class SigningKeySerializer(serializers.Serializer):
    algorithm = serializers.CharField()
    key_id = serializers.CharField()
    public_key = serializers.CharField(help_text="Base64 of the raw 32-byte Ed25519 key.")


class EnrollResponseSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    credential = serializers.CharField(help_text="Shown once; only its hash is stored.")
    heartbeat_interval_s = serializers.IntegerField()
    server_time = serializers.DateTimeField()
    signing = SigningKeySerializer(help_text="The key that signs model orders: pin it.")


class TelemetrySampleSerializer(serializers.Serializer):
    ts = serializers.DateTimeField()
    cpu_percent = _non_negative(max_value=100, required=False, allow_null=True)
    memory_percent = _non_negative(max_value=100, required=False, allow_null=True)
    power_w = _non_negative(max_value=1e5, required=False, allow_null=True)
    energy_j = _non_negative(required=False, allow_null=True)
    # At most what the database's 32-bit column holds: a larger count is the agent's error
    # (a 400 naming the field), not the server's (a 500 from the INSERT).
    inference_count = serializers.IntegerField(
        min_value=0, max_value=2_147_483_647, required=False, allow_null=True
    )
    latency_p50_ms = _non_negative(required=False, allow_null=True)
    latency_p95_ms = _non_negative(required=False, allow_null=True)
    latency_p99_ms = _non_negative(required=False, allow_null=True)
    metrics = MetricsField(required=False, default=dict)

    def validate_ts(self, value: Any) -> Any:
        limit = timezone.now() + timedelta(seconds=settings.TRIAD_MAX_CLOCK_SKEW_S)
        if value > limit:
            raise serializers.ValidationError(
                f"Timestamp is more than {settings.TRIAD_MAX_CLOCK_SKEW_S} s in the future."
            )
        return value


class LinkReportSerializer(serializers.Serializer):
    to = serializers.CharField(max_length=64, help_text="A device id or a tier.")
    bandwidth_mbps = _non_negative(max_value=1e6)
    rtt_ms = _non_negative(max_value=1e6)

    def validate_to(self, value: str) -> str:
        if value in Tier.values:
            return value
        try:
            device_id = uuid.UUID(value)
        except ValueError:
            raise serializers.ValidationError(
                "Must be a device id or one of cloud, edge, end."
            ) from None
        if not Device.objects.filter(pk=device_id).exists():
            raise serializers.ValidationError("Unknown device.")
        return str(device_id)


class HeartbeatRequestSerializer(serializers.Serializer):
    telemetry = TelemetrySampleSerializer(many=True, required=False, default=list)
    links = LinkReportSerializer(many=True, required=False, default=list)

    def validate_telemetry(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limit = settings.TRIAD_MAX_TELEMETRY_BATCH
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} samples per heartbeat.")
        return value

    def validate_links(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(value) > 100:
            raise serializers.ValidationError("At most 100 links per heartbeat.")
        return value


class DesiredStateSerializer(serializers.Serializer):
    heartbeat_interval_s = serializers.IntegerField()
    model = serializers.JSONField(
        required=False, help_text="The model order (docs/rollouts.md); absent: no order."
    )
    profile = serializers.JSONField(
        required=False, help_text="A profiling order (docs/rollouts.md); absent: none."
    )


class HeartbeatResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    server_time = serializers.DateTimeField()
    desired_state = DesiredStateSerializer()


class CredentialSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    credential = serializers.CharField()


# --- operator API -----------------------------------------------------------------------
class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = [
            "id",
            "name",
            "tier",
            "status",
            "cpu_cores",
            "memory_mb",
            "gflops",
            "accelerator",
            "power_idle_w",
            "power_busy_w",
            "cost_per_hour",
            "labels",
            "location",
            "enrolled_at",
            "heartbeat_interval_s",
            "last_heartbeat_at",
            "offline_after",
            "last_cpu_percent",
            "last_memory_percent",
            "last_power_w",
            "last_energy_j",
        ]
        read_only_fields = fields


class RetireSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, default="retired by operator")


class StatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatusChange
        fields = ["from_status", "to_status", "at", "reason"]


class TelemetrySerializer(serializers.ModelSerializer):
    class Meta:
        model = Telemetry
        fields = [
            "ts",
            "received_at",
            "cpu_percent",
            "memory_percent",
            "power_w",
            "energy_j",
            "inference_count",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_p99_ms",
            "metrics",
        ]


class TelemetryQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=10_000, required=False, default=1000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": "Must not be before 'since'."})
        return attrs


class EnrollmentTokenSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True)
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    uses = serializers.IntegerField(min_value=1, max_value=100_000, write_only=True, default=1)
    expires_in_s = serializers.IntegerField(
        min_value=60,
        max_value=90 * 86400,
        write_only=True,
        default=3600,
        help_text="Lifetime in seconds (60 s to 90 days).",
    )

    class Meta:
        model = EnrollmentToken
        fields = [
            "id",
            "name",
            "prefix",
            "state",
            "created_by",
            "created_at",
            "expires_at",
            "max_uses",
            "use_count",
            "revoked_at",
            "uses",
            "expires_in_s",
        ]
        read_only_fields = [
            "id",
            "prefix",
            "created_at",
            "expires_at",
            "max_uses",
            "use_count",
            "revoked_at",
        ]


class EnrollmentTokenCreatedSerializer(EnrollmentTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; only its hash is stored.")

    class Meta(EnrollmentTokenSerializer.Meta):
        fields = [*EnrollmentTokenSerializer.Meta.fields, "token"]


class NetworkLinkSerializer(serializers.ModelSerializer):
    class Meta:
        model = NetworkLink
        fields = [
            "id",
            "src_device",
            "src_tier",
            "dst_device",
            "dst_tier",
            "bandwidth_mbps",
            "rtt_ms",
            "source",
            "updated_at",
        ]
        read_only_fields = ["id", "source", "updated_at"]
        # Uniqueness is the database's job (see save_link); DRF's generated validators would
        # make every endpoint field required.
        validators: list[Any] = []
        extra_kwargs = {
            "bandwidth_mbps": {"min_value": 0},
            "rtt_ms": {"min_value": 0},
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        merged = {**self._current(), **attrs}
        errors = {}
        for side in ("src", "dst"):
            has_device = merged.get(f"{side}_device") is not None
            has_tier = bool(merged.get(f"{side}_tier"))
            if has_device == has_tier:
                errors[f"{side}_device"] = f"Give exactly one of {side}_device and {side}_tier."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _current(self) -> dict[str, Any]:
        if self.instance is None:
            return {}
        return {
            "src_device": self.instance.src_device,
            "src_tier": self.instance.src_tier,
            "dst_device": self.instance.dst_device,
            "dst_tier": self.instance.dst_tier,
        }
