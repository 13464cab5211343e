"""Read-only queries behind the model hub pages (writes go through `models_hub.actions`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

from django.db.models import Count, QuerySet
from django.urls import reverse

from deployments.models import ProfilingState, ProfilingTarget
from devices.models import Device
from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    DatasetPurpose,
    MeasuredLatency,
    ModelArtifact,
    Variant,
)

LIST_LIMIT = 200
# The job page shows the log's last lines; the API has all of it.
LOG_TAIL_LINES = 200


# --- models -----------------------------------------------------------------------------
@dataclass
class ModelGroup:
    """One model name and its versions, newest first."""

    name: str
    versions: list[ModelArtifact] = field(default_factory=list)


def model_groups() -> list[ModelGroup]:
    """The registry: every name with its versions, each with its job count."""
    rows = (
        ModelArtifact.objects.select_related("created_by")
        .annotate(job_count=Count("jobs"))
        .order_by("name", "-created_at")[:LIST_LIMIT]  # an aggregate drops Meta.ordering
    )
    return [ModelGroup(name, list(versions)) for name, versions in groupby(rows, lambda m: m.name)]


def model_versions(model: ModelArtifact) -> QuerySet[ModelArtifact]:
    return (
        ModelArtifact.objects.filter(name=model.name)
        .annotate(job_count=Count("jobs"))
        .order_by("-created_at")[:LIST_LIMIT]
    )


def _jobs() -> QuerySet[CompressionJob]:
    return (
        CompressionJob.objects.select_related("model", "created_by")
        .defer("log", "report")
        .annotate(variant_count=Count("variants"))
        .order_by("-created_at")
    )


def job_rows(model: ModelArtifact | None = None) -> QuerySet[CompressionJob]:
    jobs = _jobs()
    return (jobs if model is None else jobs.filter(model=model))[:LIST_LIMIT]


def model_variants(model: ModelArtifact) -> QuerySet[Variant]:
    return (
        Variant.objects.filter(model=model)
        .select_related("job")
        .defer("job__log", "job__report")
        .order_by("-job__created_at", "index")[:LIST_LIMIT]
    )


# --- data sets --------------------------------------------------------------------------
def recent_datasets() -> QuerySet[Dataset]:
    return (
        Dataset.objects.select_related("created_by")
        .annotate(
            job_count=Count("calibration_jobs", distinct=True)
            + Count("evaluation_jobs", distinct=True)
            + Count("training_jobs", distinct=True)
        )
        .order_by("-created_at")[:LIST_LIMIT]
    )


@dataclass
class DatasetChoices:
    """The data sets a compression job on `model` can use, by role: samples of the model's
    input shape; held-out sets only for evaluation, and never elsewhere."""

    calibration: list[Dataset]
    evaluation: list[Dataset]
    other_shapes: int  # data sets left out because their samples do not fit


def dataset_choices(model: ModelArtifact) -> DatasetChoices:
    shape = list(model.input_shape)
    fitting: list[Dataset] = []
    other_shapes = 0
    # Compared here, not in SQL: JSON equality differs between SQLite and PostgreSQL.
    for dataset in Dataset.objects.order_by("-created_at")[: LIST_LIMIT * 5]:
        if list(dataset.sample_shape) == shape:
            fitting.append(dataset)
        else:
            other_shapes += 1
    return DatasetChoices(
        calibration=[d for d in fitting if d.purpose != DatasetPurpose.EVALUATION],
        evaluation=[d for d in fitting if d.purpose == DatasetPurpose.EVALUATION],
        other_shapes=other_shapes,
    )


# --- jobs -------------------------------------------------------------------------------
def log_tail(job: CompressionJob, lines: int = LOG_TAIL_LINES) -> tuple[str, bool]:
    """The log's last lines, and whether earlier ones were left out."""
    kept = job.log.splitlines()
    return "\n".join(kept[-lines:]), len(kept) > lines


def _latency(metrics: dict[str, Any], threads: str, stat: str) -> float | None:
    value = ((metrics.get("latency_ms") or {}).get(threads) or {}).get(stat)
    return value if isinstance(value, int | float) else None


@dataclass
class ComparisonRow:
    """The original or one variant, as the comparison table and charts show it."""

    name: str
    recipe: str
    parent: str | None
    is_original: bool
    size_bytes: int
    metrics: dict[str, Any]
    devices: dict[str, Any]
    download_url: str
    variant_id: str | None = None

    @property
    def pareto_optimal(self) -> bool:
        return bool(self.metrics.get("pareto_optimal"))

    def latency(self, threads: str, stat: str) -> float | None:
        return _latency(self.metrics, threads, stat)

    def speedup(self, threads: str) -> float | None:
        value = (self.metrics.get("speedup") or {}).get(threads)
        return value if isinstance(value, int | float) else None

    @property
    def slower(self) -> bool:
        """Slower than the original on 1 thread (the engine notes it too)."""
        speedup = self.speedup("1_thread")
        return speedup is not None and speedup < 1.0

    @property
    def loses_over_a_point(self) -> bool:
        delta = self.metrics.get("accuracy_delta")
        return isinstance(delta, int | float) and delta < -1.0


@dataclass
class Comparison:
    """A succeeded job's original and variants, measured on the same evaluation data."""

    rows: list[ComparisonRow]
    profiles: list[str]
    labelled: bool
    # The quality axis of the scatter and of the Pareto marks: accuracy, or agreement with
    # the original when the evaluation set has no labels (as the engine's `_mark_pareto`).
    quality: str
    data: dict[str, Any]

    @property
    def pareto_count(self) -> int:
        return sum(row.pareto_optimal for row in self.rows)

    @property
    def variants(self) -> list[ComparisonRow]:
        return [row for row in self.rows if not row.is_original]

    @property
    def fastest(self) -> ComparisonRow | None:
        """The variant with the highest speed-up on 1 thread."""
        timed = [row for row in self.variants if row.speedup("1_thread") is not None]
        return max(timed, key=lambda row: row.speedup("1_thread") or 0.0, default=None)

    @property
    def smallest(self) -> ComparisonRow | None:
        return min(self.variants, key=lambda row: row.size_bytes, default=None)


def comparison(job: CompressionJob) -> Comparison | None:
    if job.status != CompressionJobStatus.SUCCEEDED or not job.report:
        return None
    report: dict[str, Any] = job.report
    original = report["variants"][0]
    rows = [
        ComparisonRow(
            name="original",
            recipe="original",
            parent=None,
            is_original=True,
            size_bytes=original.get("size_bytes") or job.model.size_bytes,
            metrics=original,
            devices=original.get("devices") or {},
            download_url=reverse("models-model-download", args=[job.model_id]),
        )
    ]
    for variant in job.variants.select_related("parent").order_by("index"):
        rows.append(
            ComparisonRow(
                name=variant.name,
                recipe=variant.recipe,
                parent=variant.parent.name if variant.parent else None,
                is_original=False,
                size_bytes=variant.size_bytes,
                metrics=variant.metrics,
                devices=variant.metrics_per_device,
                download_url=reverse("models-variant-download", args=[variant.id]),
                variant_id=str(variant.id),
            )
        )
    labelled = bool((report.get("evaluation") or {}).get("labelled", True))
    quality = "accuracy" if labelled and original.get("accuracy") is not None else "agreement"
    profiles = [profile["name"] for profile in job.device_profiles or []]
    data = {
        "quality": quality,
        "quality_label": "Accuracy (%)" if quality == "accuracy" else "Agreement (%)",
        "rows": [
            {
                "name": row.name,
                "recipe": row.recipe,
                "original": row.is_original,
                "pareto": row.pareto_optimal,
                "quality": _percent(row.metrics.get(quality)),
                "p50": row.latency("1_thread", "p50"),
                "p95": row.latency("1_thread", "p95"),
                "size_bytes": row.size_bytes,
                "size_ratio": row.metrics.get("size_ratio"),
                "speedup": row.speedup("1_thread"),
            }
            for row in rows
        ],
    }
    return Comparison(rows, profiles, labelled, quality, data)


def _percent(value: object) -> float | None:
    return 100.0 * value if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class MeasuredRow:
    """The newest latency measured on one device for the model or one of its variants."""

    what: str
    variant_id: str | None
    device: Device
    p50_ms: float
    p95_ms: float
    runs: int
    measured_at: datetime


def measured_latencies(model: ModelArtifact) -> list[MeasuredRow]:
    """Hardware-in-the-loop measurements of the model and its variants, the newest per
    (variant, device), ordered by what was measured and then by device."""
    newest: dict[tuple[str | None, str], MeasuredRow] = {}
    rows = (
        MeasuredLatency.objects.filter(model=model)
        .select_related("variant", "device")
        .order_by("measured_at")
    )
    for row in rows:
        variant_id = str(row.variant_id) if row.variant_id else None
        newest[(variant_id, str(row.device_id))] = MeasuredRow(
            what=f"variant {row.variant.name}" if row.variant else "the model itself",
            variant_id=variant_id,
            device=row.device,
            p50_ms=row.p50_ms,
            p95_ms=row.p95_ms,
            runs=row.runs,
            measured_at=row.measured_at,
        )
    return sorted(newest.values(), key=lambda r: (r.variant_id or "", r.device.name))


def profiling_in_progress(model: ModelArtifact) -> int:
    """How many devices are still timing this model (runs not finished)."""
    return ProfilingTarget.objects.filter(
        run__model=model, run__finished=False, state=ProfilingState.ORDERED
    ).count()
