"""The model hub: registered models, the data sets they are calibrated and evaluated on,
compression jobs, and the variants the jobs make.

Every write goes through `models_hub.actions`; the models only say what is stored. Files
(models, data sets, variants) lie in the default storage (MEDIA_ROOT), under a folder
named after the object that owns them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

# A running job whose worker has not written its heartbeat for this long is presumed dead:
# a re-delivered task may take it over and operators may retry it. Workers beat every
# `models_hub.tasks.HEARTBEAT_INTERVAL_S`, from a thread of their own, whatever the engine
# does (a training epoch or an export can take longer than this).
JOB_STALE_AFTER = timedelta(seconds=20)


class Framework(models.TextChoices):
    ONNX = "onnx", "ONNX"
    TORCH = "torch", "PyTorch (saved whole)"
    TORCHSCRIPT = "torchscript", "TorchScript"


class DatasetPurpose(models.TextChoices):
    CALIBRATION = "calibration", "Calibration"
    TRAINING = "training", "Training (fine-tuning, search)"
    EVALUATION = "evaluation", "Evaluation (held out)"


class CompressionJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_JOB_STATUSES = (
    CompressionJobStatus.SUCCEEDED,
    CompressionJobStatus.FAILED,
    CompressionJobStatus.CANCELLED,
)


def _user_link(related_name: str) -> Any:
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name=related_name,
    )


def model_file_path(instance: ModelArtifact, filename: str) -> str:
    return f"models/{instance.id}/{filename}"


def dataset_file_path(instance: Dataset, filename: str) -> str:
    return f"datasets/{instance.id}/{filename}"


def variant_file_path(instance: Variant, filename: str) -> str:
    return f"variants/{instance.job_id}/{filename}"


class ModelArtifact(models.Model):
    """A registered model: one version of a named model, its file and what it takes.

    The file was validated when it was registered (`models_hub.actions.register_model`)
    and is never changed afterwards: compression jobs read a copy of it. `input_shape` is
    the shape of one input sample (no batch axis), the shape data sets must have.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=40)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=100, blank=True, help_text="What it does: 'digits'...")
    framework = models.CharField(max_length=12, choices=Framework.choices)
    file = models.FileField(upload_to=model_file_path, max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    input_shape = models.JSONField(help_text="One input sample's shape, without the batch axis.")
    input_signature = models.JSONField(help_text="[{name, shape, dtype}]; null: a free axis.")
    output_signature = models.JSONField(help_text="[{name, shape, dtype}]; null: a free axis.")
    num_classes = models.PositiveIntegerField(help_text="Outputs per sample (classes).")
    metrics = models.JSONField(
        default=dict,
        blank=True,
        help_text="params, flops, operators; `measured`: the latest succeeded job's "
        "measurements of the original.",
    )
    created_by = _user_link("registered_models")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "version"],
                name="one_model_per_name_and_version",
                violation_error_message="This model already has this version.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class Dataset(models.Model):
    """An uploaded `.npz` data file: inputs `x` (samples first) and, if labelled, `y`.

    Evaluation data sets are held out: a job measures every variant on one, and never
    calibrates or trains on one.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    purpose = models.CharField(max_length=12, choices=DatasetPurpose.choices)
    file = models.FileField(upload_to=dataset_file_path, max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    samples = models.PositiveIntegerField()
    sample_shape = models.JSONField(help_text="One sample's shape (x's shape without axis 0).")
    labelled = models.BooleanField()
    num_classes = models.PositiveIntegerField(
        null=True, blank=True, help_text="The highest label + 1, when labelled."
    )
    created_by = _user_link("uploaded_datasets")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.purpose}, {self.samples} samples)"


class CompressionJob(models.Model):
    """A recipe applied to a registered model, run by a Celery worker on its own queue.

    The device profiles the variants are estimated for are frozen at submission (from the
    online fleet), so a retry measures against the same devices. `attempts` counts the
    workers that claimed the job; a worker writes only while the job is still running
    under its own attempt number, so a worker presumed dead can never overwrite the work
    of the one that took over. `log` keeps every attempt's lines, failures included.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    model = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="jobs")
    recipe = models.CharField(max_length=200, help_text="As normalised by the engine.")
    parameters = models.JSONField(default=dict, blank=True)
    calibration = models.ForeignKey(
        Dataset, on_delete=models.PROTECT, related_name="calibration_jobs"
    )
    evaluation = models.ForeignKey(
        Dataset, on_delete=models.PROTECT, related_name="evaluation_jobs"
    )
    training = models.ForeignKey(
        Dataset,
        on_delete=models.PROTECT,
        related_name="training_jobs",
        null=True,
        blank=True,
        help_text="Fine-tuning and search data; the calibration set when not given.",
    )
    seed = models.BigIntegerField(default=0)
    device_profiles = models.JSONField(help_text="[{name, gflops, power_busy_w}], frozen.")

    status = models.CharField(
        max_length=10, choices=CompressionJobStatus.choices, default=CompressionJobStatus.QUEUED
    )
    progress = models.FloatField(default=0.0, help_text="From 0 to 1.")
    stage = models.CharField(max_length=200, blank=True, help_text="What the worker is doing.")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    report = models.JSONField(null=True, blank=True, help_text="The engine's report.json.")

    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    created_by = _user_link("compression_jobs")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="compression_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.recipe} on {self.model_id} ({self.status})"

    def is_stale(self, now: datetime | None = None) -> bool:
        """Whether it is running but its worker has stopped beating (presumed dead)."""
        if self.status != CompressionJobStatus.RUNNING:
            return False
        beat = self.heartbeat_at or self.started_at
        return beat is None or beat < (now or timezone.now()) - JOB_STALE_AFTER


class Variant(models.Model):
    """A compressed model a job made, measured on the job's evaluation data.

    `parent` is the variant it was made from (null: made from the original, `model`).
    `metrics` holds accuracy, accuracy_delta (points), agreement with the original,
    params, flops, latency_ms ({1_thread, all_threads}: {p50, p95, runs}), speedup,
    size_ratio, notes and pareto_optimal; `metrics_per_device` the estimated latency and
    energy per inference on each of the job's device profiles.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(CompressionJob, on_delete=models.CASCADE, related_name="variants")
    model = models.ForeignKey(ModelArtifact, on_delete=models.PROTECT, related_name="variants")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    index = models.PositiveIntegerField(help_text="Position in the job's report (1: first).")
    name = models.CharField(max_length=100)
    recipe = models.CharField(max_length=200)
    file = models.FileField(upload_to=variant_file_path, max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    metrics = models.JSONField(default=dict)
    metrics_per_device = models.JSONField(
        default=dict, help_text="{profile: {latency_ms, energy_mj}}"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name"], name="one_variant_per_job_and_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} of job {self.job_id}"


class MeasuredLatency(models.Model):
    """A model's (or variant's) inference latency measured on a real device by its agent
    (hardware-in-the-loop profiling, `deployments.ProfilingRun`), batch 1. The newest row
    per (model, variant, device) is the one the hub shows and the scheduler uses."""

    model = models.ForeignKey(ModelArtifact, on_delete=models.CASCADE, related_name="latencies")
    variant = models.ForeignKey(
        Variant, on_delete=models.CASCADE, null=True, blank=True, related_name="latencies"
    )
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, related_name="measured_latencies"
    )
    p50_ms = models.FloatField()
    p95_ms = models.FloatField()
    runs = models.PositiveIntegerField()
    measured_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-measured_at"]
        indexes = [models.Index(fields=["model", "variant", "device", "-measured_at"])]

    def __str__(self) -> str:
        return f"{self.p50_ms:.2f} ms on {self.device_id}"
