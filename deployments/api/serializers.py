"""Shapes of the rollout API: what operators send and read, what agents report."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from deployments.actions import AGENT_STATES, MAX_PROFILE_RUNS
from deployments.events import state_counts
from deployments.models import (
    Deployment,
    DeploymentTarget,
    ProfilingRun,
    ProfilingTarget,
    TargetKind,
)
from devices.api.serializers import LabelsField
from devices.models import Tier
from models_hub.models import ModelArtifact, Variant

TARGET_ARGUMENTS = ("devices", "tier", "labels", "decision", "tasks")


class DeploymentCreateSerializer(serializers.Serializer):
    """A deployment: what to ship, to which devices, and how carefully."""

    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    model = serializers.PrimaryKeyRelatedField(queryset=ModelArtifact.objects.all())
    variant = serializers.PrimaryKeyRelatedField(
        queryset=Variant.objects.all(), required=False, allow_null=True, default=None
    )
    target_kind = serializers.ChoiceField(choices=TargetKind.choices)
    devices = serializers.ListField(
        child=serializers.UUIDField(), required=False, default=list, max_length=10_000
    )
    tier = serializers.ChoiceField(choices=Tier.choices, required=False, allow_blank=True)
    labels = LabelsField(required=False, default=dict)
    decision = serializers.UUIDField(required=False, allow_null=True, default=None)
    tasks = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list
    )
    canary_percent = serializers.IntegerField(min_value=0, max_value=100, default=10)
    batch_percent = serializers.IntegerField(min_value=1, max_value=100, default=50)
    max_failed_percent = serializers.IntegerField(min_value=0, max_value=100, default=0)
    device_timeout_s = serializers.IntegerField(min_value=1, max_value=7 * 24 * 3600, default=600)
    latency_budget_ms = serializers.FloatField(
        min_value=0.001, required=False, allow_null=True, default=None
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The argument of the chosen kind is required; the others must stay empty, so a
        # form sent with the wrong kind is refused rather than half-obeyed.
        needed = {
            TargetKind.DEVICES: "devices",
            TargetKind.TIER: "tier",
            TargetKind.LABELS: "labels",
            TargetKind.DECISION: "decision",
        }[attrs["target_kind"]]
        if not attrs.get(needed):
            raise serializers.ValidationError({needed: ["Required for this target kind."]})
        for other in set(TARGET_ARGUMENTS) - {needed}:
            if attrs.get(other) and not (needed == "decision" and other == "tasks"):
                raise serializers.ValidationError(
                    {other: [f"Not used with target_kind {attrs['target_kind']!r}."]}
                )
        return attrs


class DeploymentSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    model_version = serializers.CharField(source="model.version", read_only=True)
    variant_name = serializers.CharField(source="variant.name", read_only=True, default=None)
    manifest_version = serializers.IntegerField(source="manifest_id", read_only=True)
    sha256 = serializers.CharField(source="manifest.sha256", read_only=True, default=None)
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "model",
            "model_name",
            "model_version",
            "variant",
            "variant_name",
            "manifest_version",
            "sha256",
            "target_kind",
            "target_spec",
            "canary_percent",
            "batch_percent",
            "max_failed_percent",
            "device_timeout_s",
            "latency_budget_ms",
            "status",
            "phase",
            "phase_count",
            "ended_reason",
            "counts",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_counts(self, deployment: Deployment) -> dict[str, int]:
        return state_counts(deployment)


class DeploymentTargetSerializer(serializers.ModelSerializer):
    device_name = serializers.CharField(source="device.name", read_only=True)

    class Meta:
        model = DeploymentTarget
        fields = [
            "id",
            "device",
            "device_name",
            "phase",
            "state",
            "progress",
            "reason",
            "detail",
            "previous_manifest",
            "released_at",
            "deadline_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields


class ActiveModelSerializer(serializers.Serializer):
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$")
    version = serializers.IntegerField(min_value=1)


class ModelStatusSerializer(serializers.Serializer):
    """An agent's report (docs/rollouts.md, "Status reports")."""

    deployment_id = serializers.UUIDField()
    version = serializers.IntegerField(min_value=1)
    state = serializers.ChoiceField(choices=AGENT_STATES)
    progress = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    reason = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
    detail = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    active = ActiveModelSerializer(allow_null=True, required=False, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["state"] == "failed" and not attrs["reason"]:
            raise serializers.ValidationError({"reason": ["Required when the state is failed."]})
        return attrs


class ModelStatusAnswerSerializer(serializers.Serializer):
    state = serializers.CharField(help_text="The device's state in the rollout.")


class ProfilingRunCreateSerializer(serializers.Serializer):
    model = serializers.PrimaryKeyRelatedField(queryset=ModelArtifact.objects.all())
    variant = serializers.PrimaryKeyRelatedField(
        queryset=Variant.objects.all(), required=False, allow_null=True, default=None
    )
    devices = serializers.ListField(child=serializers.UUIDField(), max_length=1000)
    runs = serializers.IntegerField(min_value=1, max_value=MAX_PROFILE_RUNS, default=50)
    timeout_s = serializers.IntegerField(min_value=1, max_value=24 * 3600, default=600)


class ProfilingTargetSerializer(serializers.ModelSerializer):
    device_name = serializers.CharField(source="device.name", read_only=True)

    class Meta:
        model = ProfilingTarget
        fields = [
            "device",
            "device_name",
            "state",
            "p50_ms",
            "p95_ms",
            "reason",
            "detail",
            "deadline_at",
            "finished_at",
        ]
        read_only_fields = fields


class ProfilingRunSerializer(serializers.ModelSerializer):
    targets = ProfilingTargetSerializer(many=True, read_only=True)

    class Meta:
        model = ProfilingRun
        fields = [
            "id",
            "model",
            "variant",
            "runs",
            "timeout_s",
            "finished",
            "targets",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class ProfileResultSerializer(serializers.Serializer):
    """An agent's profiling result (docs/rollouts.md, "Profiling")."""

    run_id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=["measured", "failed"])
    p50_ms = serializers.FloatField(min_value=0.0, required=False, allow_null=True, default=None)
    p95_ms = serializers.FloatField(min_value=0.0, required=False, allow_null=True, default=None)
    runs = serializers.IntegerField(min_value=0, max_value=MAX_PROFILE_RUNS, default=0)
    reason = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
    detail = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["state"] == "measured":
            for name in ("p50_ms", "p95_ms"):
                if attrs[name] is None:
                    raise serializers.ValidationError({name: ["Required when measured."]})
            if attrs["runs"] < 1:
                raise serializers.ValidationError({"runs": ["Required when measured."]})
            if attrs["p95_ms"] < attrs["p50_ms"]:
                raise serializers.ValidationError({"p95_ms": ["Must be at least p50_ms."]})
        elif not attrs["reason"]:
            raise serializers.ValidationError({"reason": ["Required when the state is failed."]})
        return attrs
