"""Serializers of the model hub API. Every field error names the field.

The engine validates model files, data files, recipes and parameters (models_hub.actions
turns its refusals into errors on `file`, `input_shape`, `recipe`, `parameters` (nested by
parameter name), `calibration`, `evaluation` or `training`); these serializers check the
request's shape.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from models_hub.actions import MAX_SEED, MAX_SHAPE_RANK
from models_hub.models import CompressionJob, Dataset, DatasetPurpose, ModelArtifact, Variant


def _username() -> Any:
    return serializers.SlugRelatedField(slug_field="username", read_only=True)


def _download_url(serializer: serializers.Serializer, route: str, obj: Any) -> str:
    path = reverse(route, kwargs={"pk": obj.pk})
    request = serializer.context.get("request")
    return request.build_absolute_uri(path) if request is not None else path


class ShapeField(serializers.ListField):
    """A list of axis lengths. In a form, the field repeated once per axis, or one value
    such as `1,16,16` or `[1, 16, 16]`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            child=serializers.IntegerField(min_value=1, max_value=1 << 20),
            min_length=1,
            max_length=MAX_SHAPE_RANK,
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> list[int]:
        if isinstance(data, str):
            data = [data]
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], str):
            text = data[0].strip()
            try:
                parsed = json.loads(text) if text.startswith("[") else text.split(",")
            except ValueError:
                raise serializers.ValidationError("Not a list of axis lengths.") from None
            data = [item.strip() if isinstance(item, str) else item for item in parsed]
        return list(super().to_internal_value(data))


class TensorSpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    shape = serializers.ListField(
        child=serializers.IntegerField(allow_null=True), help_text="null: an axis left free."
    )
    dtype = serializers.CharField()


# --- models -----------------------------------------------------------------------------
class ModelArtifactSerializer(serializers.ModelSerializer):
    filename = serializers.SerializerMethodField()
    input_shape = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    input_signature = TensorSpecSerializer(many=True, read_only=True)
    output_signature = TensorSpecSerializer(many=True, read_only=True)
    metrics = serializers.DictField(
        read_only=True,
        help_text="params, flops, operators; `measured` (after a job): the original's "
        "accuracy, agreement, latency_ms, devices, and the job and evaluation set.",
    )
    created_by = _username()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ModelArtifact
        fields = [
            "id",
            "name",
            "version",
            "description",
            "task",
            "framework",
            "filename",
            "sha256",
            "size_bytes",
            "input_shape",
            "input_signature",
            "output_signature",
            "num_classes",
            "metrics",
            "created_by",
            "created_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_filename(self, obj: ModelArtifact) -> str:
        return PurePath(obj.file.name).name

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, obj: ModelArtifact) -> str:
        return _download_url(self, "modelartifact-download", obj)


class ModelArtifactUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="An ONNX model, a torch model saved whole (torch.save(model)), or TorchScript."
    )
    name = serializers.CharField(
        max_length=100, required=False, help_text="Defaults to the file's name."
    )
    version = serializers.CharField(max_length=40, default="1")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    input_shape = ShapeField(
        required=False,
        help_text="One input sample's shape, without the batch axis, as in [1, 16, 16]. "
        "Needed for torch models, and for ONNX models whose input has free axes.",
    )


# --- data sets --------------------------------------------------------------------------
class DatasetSerializer(serializers.ModelSerializer):
    filename = serializers.SerializerMethodField()
    sample_shape = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    created_by = _username()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "description",
            "purpose",
            "filename",
            "sha256",
            "size_bytes",
            "samples",
            "sample_shape",
            "labelled",
            "num_classes",
            "created_by",
            "created_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_filename(self, obj: Dataset) -> str:
        return PurePath(obj.file.name).name

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, obj: Dataset) -> str:
        return _download_url(self, "dataset-download", obj)


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="An .npz archive: inputs 'x' (samples first) and, if labelled, integer "
        "labels 'y' (one per sample)."
    )
    name = serializers.CharField(
        max_length=100, required=False, help_text="Defaults to the file's name."
    )
    purpose = serializers.ChoiceField(
        choices=DatasetPurpose.choices,
        help_text="Evaluation sets are held out: jobs measure on them and never calibrate "
        "or train on them.",
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


# --- jobs -------------------------------------------------------------------------------
class DeviceProfileSerializer(serializers.Serializer):
    name = serializers.CharField()
    gflops = serializers.FloatField()
    power_busy_w = serializers.FloatField()


class CompressionJobSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    model_version = serializers.CharField(source="model.version", read_only=True)
    parameters = serializers.DictField(read_only=True)
    created_by = _username()

    class Meta:
        model = CompressionJob
        fields = [
            "id",
            "model",
            "model_name",
            "model_version",
            "recipe",
            "parameters",
            "calibration",
            "evaluation",
            "training",
            "seed",
            "status",
            "progress",
            "stage",
            "error",
            "cancel_requested",
            "attempts",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class CompressionJobDetailSerializer(CompressionJobSerializer):
    device_profiles = DeviceProfileSerializer(
        many=True, read_only=True, help_text="Frozen at submission, from the online fleet."
    )
    report = serializers.DictField(
        read_only=True,
        allow_null=True,
        help_text="The engine's report (format triad.compression-report/1): variants[0] "
        "is the original, measured on the same data.",
    )

    class Meta(CompressionJobSerializer.Meta):
        fields = [*CompressionJobSerializer.Meta.fields, "device_profiles", "log", "report"]
        read_only_fields = fields


class CompressionJobCreateSerializer(serializers.Serializer):
    model = serializers.PrimaryKeyRelatedField(queryset=ModelArtifact.objects.all())
    recipe = serializers.CharField(
        max_length=200,
        help_text="int8-static, int8-dynamic, prune:R, prune-distill:R or nas, chained "
        "with '+' (prune-distill:0.5+int8-static).",
    )
    parameters = serializers.DictField(
        required=False, default=dict, help_text="The steps' parameters (epochs, calibration...)."
    )
    calibration = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    evaluation = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    training = serializers.PrimaryKeyRelatedField(
        queryset=Dataset.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Fine-tuning and search data; the calibration set when not given.",
    )
    seed = serializers.IntegerField(min_value=0, max_value=MAX_SEED, default=0)


# --- variants ---------------------------------------------------------------------------
class DeviceEstimateSerializer(serializers.Serializer):
    latency_ms = serializers.FloatField()
    energy_mj = serializers.FloatField()


class VariantSerializer(serializers.ModelSerializer):
    filename = serializers.SerializerMethodField()
    metrics = serializers.DictField(
        read_only=True,
        help_text="accuracy (null without labels), accuracy_delta (points), agreement with "
        "the original, params, flops, latency_ms {1_thread, all_threads: {p50, p95, runs}}, "
        "speedup {1_thread, all_threads}, size_ratio, notes, pareto_optimal.",
    )
    metrics_per_device = serializers.DictField(
        child=DeviceEstimateSerializer(),
        read_only=True,
        help_text="Per device profile of the job: estimated latency and energy per inference.",
    )
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Variant
        fields = [
            "id",
            "job",
            "model",
            "parent",
            "index",
            "name",
            "recipe",
            "filename",
            "sha256",
            "size_bytes",
            "metrics",
            "metrics_per_device",
            "created_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_filename(self, obj: Variant) -> str:
        return PurePath(obj.file.name).name

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, obj: Variant) -> str:
        return _download_url(self, "variant-download", obj)
