"""Serializers of the scheduling API. Every field error names the field.

The engine validates task graphs and problems (scheduling.actions turns its refusals into
errors on `document`, `parameters`, `file`, `workload`, `fleet` or `objectives`, with the
path of the task at fault in the message); these serializers check the request's shape.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from scheduling.engine.problem import DEFAULT_OBJECTIVES
from scheduling.models import (
    Algorithm,
    Decision,
    Objective,
    SchedulingJob,
    Solution,
    Workload,
)
from scheduling.templates import MAX_SEED, TEMPLATES

MAX_COMMENT_CHARS = 2000


def _username() -> Any:
    return serializers.SlugRelatedField(slug_field="username", read_only=True)


def _comment(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(max_length=MAX_COMMENT_CHARS, **kwargs)


# --- workloads --------------------------------------------------------------------------
class WorkloadSerializer(serializers.ModelSerializer):
    created_by = _username()

    class Meta:
        model = Workload
        fields = [
            "id",
            "name",
            "description",
            "source",
            "template",
            "parameters",
            "task_count",
            "edge_count",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class WorkloadDetailSerializer(WorkloadSerializer):
    class Meta(WorkloadSerializer.Meta):
        fields = [*WorkloadSerializer.Meta.fields, "document"]
        read_only_fields = fields


class WorkloadCreateSerializer(serializers.Serializer):
    """Either a task graph (`document`) or a template with its parameters."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    document = serializers.JSONField(
        required=False, help_text="The task graph: {tasks: [...], edges: [...]}."
    )
    template = serializers.ChoiceField(choices=sorted(TEMPLATES), required=False)
    parameters = serializers.DictField(
        required=False, default=dict, help_text="The template's parameters."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("document" in attrs) == ("template" in attrs):
            raise serializers.ValidationError(
                {"document": "Give either a document or a template, not both nor neither."}
            )
        if "document" in attrs and attrs["parameters"]:
            raise serializers.ValidationError({"parameters": "Only a template takes these."})
        return attrs


class WorkloadUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="A problem document (its tasks and edges are kept) or a WfFormat workflow."
    )
    name = serializers.CharField(
        max_length=100, required=False, help_text="Defaults to the file's name."
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


class TemplateParameterSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    minimum = serializers.IntegerField()
    maximum = serializers.IntegerField()
    default = serializers.IntegerField()


class WorkloadTemplateSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    parameters = TemplateParameterSerializer(many=True)


# --- jobs -------------------------------------------------------------------------------
class SchedulingJobSerializer(serializers.ModelSerializer):
    workload_name = serializers.CharField(source="workload.name", read_only=True)
    created_by = _username()

    class Meta:
        model = SchedulingJob
        fields = [
            "id",
            "workload",
            "workload_name",
            "status",
            "objectives",
            "algorithm",
            "generations",
            "population",
            "seed",
            "fleet_size",
            "progress",
            "error",
            "cancel_requested",
            "attempts",
            "hypervolume",
            "front_dominates_baselines",
            "wall_time_s",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class SnapshotDeviceSerializer(serializers.Serializer):
    """A device as the job's fleet snapshot has it (problem format)."""

    id = serializers.CharField()
    name = serializers.CharField()
    tier = serializers.CharField()
    gflops = serializers.FloatField()
    memory_mb = serializers.FloatField()
    power_idle_w = serializers.FloatField()
    power_busy_w = serializers.FloatField()
    cost_per_hour = serializers.FloatField()


class SchedulingJobDetailSerializer(SchedulingJobSerializer):
    devices = SnapshotDeviceSerializer(
        source="problem.devices", many=True, read_only=True, help_text="The fleet snapshot."
    )

    class Meta(SchedulingJobSerializer.Meta):
        fields = [*SchedulingJobSerializer.Meta.fields, "history", "lower_bounds", "devices"]
        read_only_fields = fields


def default_objectives() -> list[str]:
    return list(DEFAULT_OBJECTIVES)


class SchedulingJobCreateSerializer(serializers.Serializer):
    workload = serializers.PrimaryKeyRelatedField(queryset=Workload.objects.all())
    objectives = serializers.ListField(
        child=serializers.ChoiceField(choices=Objective.choices),
        min_length=1,
        max_length=len(Objective.choices),
        default=default_objectives,
        help_text="Objectives to minimise (default makespan and energy).",
    )
    algorithm = serializers.ChoiceField(choices=Algorithm.choices, default=Algorithm.NSGA2)
    generations = serializers.IntegerField(min_value=1, max_value=2000, default=100)
    population = serializers.IntegerField(min_value=8, max_value=1000, default=100)
    seed = serializers.IntegerField(min_value=0, max_value=MAX_SEED, default=1)

    def validate_objectives(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Each objective may be named once.")
        return value


# --- solutions --------------------------------------------------------------------------
class SolutionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Solution
        fields = [
            "id",
            "job",
            "kind",
            "name",
            "index",
            "objectives",
            "feasible",
            "deadline_violation_s",
            "is_knee",
            "hypervolume",
        ]
        read_only_fields = fields


class TimelineEntrySerializer(serializers.Serializer):
    task = serializers.CharField()
    device = serializers.CharField()
    start = serializers.FloatField()
    finish = serializers.FloatField()


class SolutionSerializer(SolutionSummarySerializer):
    assignment = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="Task id -> device id."
    )
    timeline = TimelineEntrySerializer(many=True, read_only=True)

    class Meta(SolutionSummarySerializer.Meta):
        fields = [*SolutionSummarySerializer.Meta.fields, "assignment", "timeline"]
        read_only_fields = fields


# --- decisions --------------------------------------------------------------------------
class DecisionSerializer(serializers.ModelSerializer):
    solution_summary = SolutionSummarySerializer(source="solution", read_only=True)
    proposed_by = _username()
    reviewed_by = _username()

    class Meta:
        model = Decision
        fields = [
            "id",
            "job",
            "solution",
            "solution_summary",
            "status",
            "comment",
            "proposed_by",
            "proposed_at",
            "review_comment",
            "reviewed_by",
            "reviewed_at",
        ]
        read_only_fields = fields


class DecisionProposeSerializer(serializers.Serializer):
    solution = serializers.PrimaryKeyRelatedField(queryset=Solution.objects.all())
    comment = _comment(required=False, allow_blank=True, default="")


class DecisionApproveSerializer(serializers.Serializer):
    comment = _comment(required=False, allow_blank=True, default="")


class DecisionRejectSerializer(serializers.Serializer):
    comment = _comment(help_text="Why the decision is rejected.")
