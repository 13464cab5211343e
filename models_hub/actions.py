"""Every change to the model hub goes through one of these functions, each one transaction.

Live events are sent with `transaction.on_commit`, so the browser never sees a change that
was rolled back. A file written to the storage (MEDIA_ROOT) for a row is deleted again when
the transaction that would have stored the row fails, and a deleted row's files go once its
deletion has committed; uploads are checked in a scratch file before anything is stored.
The functions the Celery task calls (`start_attempt`, `record_*`, `beat`) are fenced by the
attempt number: they change a job only while it is running under the caller's attempt, and
say whether it still is.

The compression engine (torch, onnx, onnxruntime) is imported where it is used, not here at
the top: the ASGI server and Celery beat import this module and need none of it until an
operator uploads a model or submits a job.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from numbers import Integral, Real
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.text import get_valid_filename

from models_hub import events
from models_hub.fleet import device_profiles
from models_hub.models import (
    JOB_STALE_AFTER,
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    DatasetPurpose,
    Framework,
    ModelArtifact,
    Variant,
)

if TYPE_CHECKING:
    from models_hub.compression import CompressionError, CompressOptions, Recipe

log = logging.getLogger(__name__)

# Room left under the upload body limit (TRIAD_MAX_MODEL_BYTES) for the multipart envelope,
# so that a file just over the limit is answered with an error naming `file`.
_MULTIPART_ROOM_BYTES = 16 * 1024
MAX_ERROR_CHARS = 2000
# A job's log keeps its last this many characters (every attempt's lines, in order).
MAX_LOG_CHARS = 100_000
MAX_LOG_LINE_CHARS = 1000
MAX_FILENAME_CHARS = 120
MAX_SHAPE_RANK = 8
MAX_SEED = 2**32 - 1


class ModelHubError(Exception):
    """A request the model hub refuses. `field` names the input at fault, when there is
    one; a nested input is dotted (`parameters.epochs`)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ModelHubConflict(ModelHubError):
    """The object's current state forbids the request (cancel a finished job...)."""


def max_file_bytes() -> int:
    """The largest model or data file an upload may carry."""
    return int(settings.TRIAD_MAX_MODEL_BYTES) - _MULTIPART_ROOM_BYTES


# --- uploads ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """An upload copied to a scratch file, with its digest."""

    path: Path
    sha256: str
    size_bytes: int
    filename: str


@contextlib.contextmanager
def _received(upload: IO[bytes], default_name: str, field: str = "file") -> Iterator[Received]:
    """Copy the upload to a scratch file (refusing one over the limit), yield it, delete it."""
    limit = max_file_bytes()
    digest = hashlib.sha256()
    size = 0
    handle, name = tempfile.mkstemp(prefix="triad-upload-")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as scratch:
            for chunk in File(upload).chunks():
                size += len(chunk)
                if size > limit:
                    raise ModelHubError(f"The file is larger than {limit} bytes.", field)
                digest.update(chunk)
                scratch.write(chunk)
        if size == 0:
            raise ModelHubError("The file is empty.", field)
        filename = _filename(getattr(upload, "name", None), default_name)
        yield Received(path, digest.hexdigest(), size, filename)
    finally:
        path.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _filename(name: str | None, default: str) -> str:
    """The upload's own name, made safe for the storage (and kept for downloads)."""
    base = PurePath(name or "").name
    try:
        safe = get_valid_filename(base)
    except Exception:  # Django refuses names such as '..'
        safe = ""
    if not safe:
        return default
    stem, suffix = os.path.splitext(safe)
    return stem[: MAX_FILENAME_CHARS - len(suffix[:20])] + suffix[:20]


@contextlib.contextmanager
def _files_removed_on_failure() -> Iterator[list[str]]:
    """Collects the storage names written in the block; deletes them if it raises."""
    written: list[str] = []
    try:
        yield written
    except BaseException:
        _delete_files(written)
        raise


def _delete_files(names: Sequence[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # a file that cannot go must not turn a done change into an error
            log.exception("could not delete the stored file %s", name)


def _delete_files_on_commit(names: Sequence[str]) -> None:
    kept = [name for name in names if name]
    if kept:
        transaction.on_commit(lambda: _delete_files(kept))


def _engine_refusal(error: CompressionError, renames: Mapping[str, str]) -> ModelHubError:
    """The engine's refusal as the hub's, its field renamed to the request's."""
    field = error.field or ""
    root, _, rest = field.partition(".")
    named = renames.get(root, root)
    return ModelHubError(error.message, f"{named}.{rest}" if rest else named or None)


def _unreadable(error: Exception, what: str) -> ModelHubError:
    log.warning("an uploaded %s could not be read", what, exc_info=True)
    first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return ModelHubError(f"Cannot read this {what}: {type(error).__name__}: {first}", "file")


# --- models -----------------------------------------------------------------------------
def register_model(
    *,
    upload: IO[bytes],
    name: str,
    version: str,
    created_by: Any,
    input_shape: Sequence[int] | None = None,
    description: str = "",
    task: str = "",
) -> ModelArtifact:
    """Register an uploaded model: an ONNX file, a torch model saved whole or TorchScript.

    The engine validates it first (it parses, onnxruntime can run every operator, a torch
    pickle names only trusted classes, it accepts samples of `input_shape`); a refused file
    names `file` or `input_shape` and stores nothing. A torch model needs `input_shape`; an
    ONNX model's defaults to its input's when every axis but the batch is fixed.
    """
    from models_hub.compression import CompressionError, inspect_model

    shape = _checked_shape(input_shape, "input_shape") if input_shape is not None else None
    _refuse_taken_version(name, version)
    with _received(upload, "model") as received:
        try:
            info = inspect_model(received.path, shape, trust_pickle=False, field="file")
        except CompressionError as error:
            raise _engine_refusal(error, {"model": "file"}) from error
        except Exception as error:  # whatever a hostile file makes a library do: a refusal
            raise _unreadable(error, "model") from error
        inputs = info.signature["inputs"]
        outputs = info.signature["outputs"]
        if len(inputs) != 1:
            raise ModelHubError(
                f"Models with one input are supported; it has {len(inputs)}.", "file"
            )
        if shape is None:
            shape = _fixed_shape(inputs[0]["shape"][1:])
        num_classes = _num_classes(outputs, received.path, info.framework, shape)
        metrics = {
            "params": info.params,
            "flops": info.flops,
            "operators": list(info.operators),
        }
        return _store_model(
            received=received,
            framework=info.framework,
            name=name,
            version=version,
            description=description,
            task=task,
            input_shape=list(shape),
            inputs=inputs,
            outputs=outputs,
            num_classes=num_classes,
            metrics=metrics,
            created_by=created_by,
        )


def _checked_shape(shape: Sequence[int], field: str) -> tuple[int, ...]:
    if isinstance(shape, str | bytes) or not isinstance(shape, Sequence):
        raise ModelHubError("Must be a list of axis lengths, as in [1, 16, 16].", field)
    if not 1 <= len(shape) <= MAX_SHAPE_RANK:
        raise ModelHubError(f"From 1 to {MAX_SHAPE_RANK} axes, not {len(shape)}.", field)
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 20 for d in shape):
        raise ModelHubError("Every axis length must be a whole number above 0.", field)
    return tuple(shape)


def _fixed_shape(axes: Sequence[int | None]) -> tuple[int, ...]:
    if not axes or any(axis is None for axis in axes):
        shown = ", ".join("?" if axis is None else str(axis) for axis in axes)
        raise ModelHubError(
            f"The model's input has free axes ([batch, {shown}]); say the shape of one sample.",
            "input_shape",
        )
    return tuple(int(axis) for axis in axes if axis is not None)


def _num_classes(
    outputs: Sequence[Mapping[str, Any]], path: Path, framework: str, shape: tuple[int, ...]
) -> int:
    """The classes the model predicts: its first output must be [batch, classes]."""
    if not outputs or len(outputs[0]["shape"]) != 2:
        shown = outputs[0]["shape"] if outputs else "none"
        raise ModelHubError(
            f"The model must output one [batch, classes] array of scores; its output is {shown}.",
            "file",
        )
    classes = outputs[0]["shape"][1]
    if classes is None and framework == Framework.ONNX:
        import numpy as np

        from models_hub.compression.measure import run_onnx

        try:
            classes = run_onnx(path, np.zeros((1, *shape), dtype=np.float32)).shape[1]
        except Exception as error:
            raise _unreadable(error, "model") from error
    if not isinstance(classes, int) or classes < 1:
        raise ModelHubError("The model's output says no number of classes.", "file")
    return classes


def _refuse_taken_version(name: str, version: str) -> None:
    if ModelArtifact.objects.filter(name=name, version=version).exists():
        raise ModelHubError(f"{name} already has a version {version!r}.", "version")


@transaction.atomic
def _store_model(
    *,
    received: Received,
    framework: str,
    name: str,
    version: str,
    description: str,
    task: str,
    input_shape: list[int],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    num_classes: int,
    metrics: dict[str, Any],
    created_by: Any,
) -> ModelArtifact:
    _refuse_taken_version(name, version)
    artifact = ModelArtifact(
        name=name,
        version=version,
        description=description,
        task=task,
        framework=framework,
        sha256=received.sha256,
        size_bytes=received.size_bytes,
        input_shape=input_shape,
        input_signature=inputs,
        output_signature=outputs,
        num_classes=num_classes,
        metrics=_json_safe(metrics),
        created_by=_user(created_by),
    )
    with _files_removed_on_failure() as written:
        with received.path.open("rb") as content:
            artifact.file.save(received.filename, File(content), save=False)
        written.append(artifact.file.name)
        try:
            with transaction.atomic():
                artifact.save(force_insert=True)
        except IntegrityError as error:  # a registration that raced ours past the check
            raise ModelHubError(f"{name} already has a version {version!r}.", "version") from error
    return artifact


@transaction.atomic
def delete_model(artifact: ModelArtifact) -> None:
    """Delete a model no job used (a job keeps its model for the record), and its file."""
    jobs = CompressionJob.objects.filter(model=artifact).count()
    if jobs:
        raise ModelHubConflict(f"{jobs} compression job(s) used this model; it cannot be deleted.")
    _delete_files_on_commit([artifact.file.name])
    artifact.delete()


# --- data sets --------------------------------------------------------------------------
def register_dataset(
    *, upload: IO[bytes], name: str, purpose: str, created_by: Any, description: str = ""
) -> Dataset:
    """Register an uploaded `.npz` data file (`x`, and `y` if labelled).

    The engine checks it (a readable archive without pickles, a numeric non-empty finite
    `x`, one integer label per sample); a refused file names `file` and stores nothing.
    """
    from models_hub.compression import CompressionError, load_data

    if purpose not in DatasetPurpose.values:
        raise ModelHubError(f"One of {', '.join(DatasetPurpose.values)}.", "purpose")
    with _received(upload, "data.npz") as received:
        try:
            data = load_data(received.path, "file")
        except CompressionError as error:
            raise _engine_refusal(error, {}) from error
        except Exception as error:
            raise _unreadable(error, "data file") from error
        return _store_dataset(
            received=received,
            name=name,
            description=description,
            purpose=purpose,
            samples=len(data),
            sample_shape=list(data.sample_shape),
            num_classes=None if data.y is None else int(data.y.max()) + 1,
            created_by=created_by,
        )


@transaction.atomic
def _store_dataset(
    *,
    received: Received,
    name: str,
    description: str,
    purpose: str,
    samples: int,
    sample_shape: list[int],
    num_classes: int | None,
    created_by: Any,
) -> Dataset:
    dataset = Dataset(
        name=name,
        description=description,
        purpose=purpose,
        sha256=received.sha256,
        size_bytes=received.size_bytes,
        samples=samples,
        sample_shape=sample_shape,
        labelled=num_classes is not None,
        num_classes=num_classes,
        created_by=_user(created_by),
    )
    with _files_removed_on_failure() as written:
        with received.path.open("rb") as content:
            dataset.file.save(received.filename, File(content), save=False)
        written.append(dataset.file.name)
        dataset.save(force_insert=True)
    return dataset


@transaction.atomic
def delete_dataset(dataset: Dataset) -> None:
    """Delete a data set no job used, and its file."""
    used = CompressionJob.objects.filter(
        Q(calibration=dataset) | Q(evaluation=dataset) | Q(training=dataset)
    ).count()
    if used:
        raise ModelHubConflict(
            f"{used} compression job(s) used this data set; it cannot be deleted."
        )
    _delete_files_on_commit([dataset.file.name])
    dataset.delete()


# --- jobs -------------------------------------------------------------------------------
@transaction.atomic
def submit_compression_job(
    *,
    model: ModelArtifact,
    recipe: str,
    calibration: Dataset,
    evaluation: Dataset,
    created_by: Any,
    parameters: Mapping[str, Any] | None = None,
    training: Dataset | None = None,
    seed: int = 0,
) -> CompressionJob:
    """Check everything the engine would refuse, freeze the fleet's device profiles, store
    a queued job and enqueue its task (queue `compression`) on commit.

    Refused: a recipe or parameter the engine refuses (`recipe`, `parameters.<name>`), a
    recipe that needs a torch model on an ONNX one, data sets whose samples do not have the
    model's input shape, labels the model cannot predict or that a step needs and lacks
    (`calibration`, `evaluation`, `training`), and an evaluation set that is not held-out
    data. Nothing is stored then.
    """
    from models_hub.compression import CompressionError, check_parameters, parse_recipe

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ModelHubError(f"A whole number from 0 to {MAX_SEED}.", "seed")
    if not isinstance(parameters, Mapping | None):
        raise ModelHubError("Must be an object of parameter names and values.", "parameters")
    profiles = device_profiles()
    try:
        parsed = parse_recipe(recipe, "recipe")
        _check_recipe_fits_model(parsed, model)
        check_parameters(parsed, _options(parameters or {}, profiles, seed))
    except CompressionError as error:
        raise _engine_refusal(error, {"model": "recipe"}) from error
    _check_datasets(parsed, model, calibration, evaluation, training)
    job = CompressionJob.objects.create(
        model=model,
        recipe=parsed.text,
        parameters=_json_safe(dict(parameters or {})),
        calibration=calibration,
        evaluation=evaluation,
        training=training,
        seed=seed,
        device_profiles=_json_safe(profiles),
        created_by=_user(created_by),
    )
    _announce_and_enqueue(job)
    return job


def _options(
    parameters: Mapping[str, Any], profiles: list[dict[str, Any]], seed: int
) -> CompressOptions:
    from models_hub.compression import CompressOptions, DeviceProfile

    return CompressOptions(
        parameters=dict(parameters),
        device_profiles=tuple(DeviceProfile(**profile) for profile in profiles),
        seed=seed,
    )


def job_options(job: CompressionJob) -> CompressOptions:
    """The engine's options for the job (the worker's, from what was frozen)."""
    return _options(job.parameters, job.device_profiles, job.seed)


def _check_recipe_fits_model(recipe: Recipe, model: ModelArtifact) -> None:
    """Pruning, distillation and the search change a torch model's layers: ONNX and
    TorchScript models can only be quantised."""
    for step in recipe.steps:
        if step.needs_torch and model.framework != Framework.TORCH:
            raise ModelHubError(
                f"'{step.name}' needs a torch model saved whole; {model} is "
                f"{Framework(model.framework).label} (it can be quantised: int8-static, "
                "int8-dynamic).",
                "recipe",
            )


def _check_datasets(
    recipe: Recipe,
    model: ModelArtifact,
    calibration: Dataset,
    evaluation: Dataset,
    training: Dataset | None,
) -> None:
    if evaluation.purpose != DatasetPurpose.EVALUATION:
        raise ModelHubError(
            f"Variants are measured on held-out data: {evaluation.name} is a "
            f"{evaluation.purpose} data set, not an evaluation one.",
            "evaluation",
        )
    roles = {"calibration": calibration, "evaluation": evaluation, "training": training}
    for field, dataset in roles.items():
        if dataset is None:
            continue
        if field != "evaluation" and dataset.purpose == DatasetPurpose.EVALUATION:
            raise ModelHubError(
                f"{dataset.name} is held-out evaluation data; it cannot be used for {field}.",
                field,
            )
        if list(dataset.sample_shape) != list(model.input_shape):
            raise ModelHubError(
                f"{dataset.name}'s samples have shape {list(dataset.sample_shape)}; "
                f"{model} takes samples of shape {list(model.input_shape)}.",
                field,
            )
        if dataset.num_classes is not None and dataset.num_classes > model.num_classes:
            raise ModelHubError(
                f"{dataset.name} holds class {dataset.num_classes - 1}, but {model} has "
                f"{model.num_classes} outputs (classes 0 to {model.num_classes - 1}).",
                field,
            )
    fine_tuned = training or calibration
    if recipe.needs_labels and not fine_tuned.labelled:
        raise ModelHubError(
            f"'{recipe.text}' trains on labels: {fine_tuned.name} has none.",
            "training" if training is not None else "calibration",
        )


def _announce_and_enqueue(job: CompressionJob) -> None:
    job_id = str(job.id)
    transaction.on_commit(lambda: events.publish_job_status(job))
    transaction.on_commit(lambda: _enqueue(job_id))


def _enqueue(job_id: str) -> None:
    """Send the job's task (routed to the `compression` queue by CELERY_TASK_ROUTES). A job
    whose task could not be sent (the broker is down) fails at once, so that it can be
    retried, instead of staying queued for ever."""
    # Imported here: the task module imports this one.
    from models_hub.tasks import run_compression_job

    try:
        run_compression_job.delay(job_id)
    except Exception as error:
        log.exception("could not queue compression job %s", job_id)
        _fail_unsent(job_id, f"Could not queue the job: {type(error).__name__}: {error}")


@transaction.atomic
def _fail_unsent(job_id: str, error: str) -> None:
    now = timezone.now()
    unsent = CompressionJob.objects.filter(pk=job_id, status=CompressionJobStatus.QUEUED)
    if unsent.update(
        status=CompressionJobStatus.FAILED, error=error[:MAX_ERROR_CHARS], finished_at=now
    ):
        job = CompressionJob.objects.get(pk=job_id)
        transaction.on_commit(lambda: events.publish_job_status(job))


@transaction.atomic
def request_cancel(job: CompressionJob) -> CompressionJob:
    """Cancel a queued job, or a running one whose worker stopped beating, at once; ask a
    running one to stop at the engine's next check. (A stale worker that comes back is
    fenced off by its attempt number.)"""
    job = CompressionJob.objects.select_for_update().select_related("model").get(pk=job.pk)
    if job.status == CompressionJobStatus.QUEUED or job.is_stale():
        job.status = CompressionJobStatus.CANCELLED
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "finished_at"])
    elif job.status == CompressionJobStatus.RUNNING:
        if job.cancel_requested:
            return job
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
    else:
        raise ModelHubConflict(f"The job has {job.status}; there is nothing to cancel.")
    transaction.on_commit(lambda: events.publish_job_status(job))
    return job


@transaction.atomic
def retry_job(job: CompressionJob) -> CompressionJob:
    """Queue a failed or cancelled job again, or one whose worker stopped beating.

    It runs the same recipe on the same data and device profiles; its log is kept. Claimed
    with a conditional UPDATE, so of two retries at once only one enqueues.
    """
    retryable = Q(
        status__in=[CompressionJobStatus.FAILED, CompressionJobStatus.CANCELLED]
    ) | _stale_running(timezone.now())
    claimed = (
        CompressionJob.objects.filter(pk=job.pk)
        .filter(retryable)
        .update(
            status=CompressionJobStatus.QUEUED,
            cancel_requested=False,
            error="",
            started_at=None,
            finished_at=None,
            **_CLEARED_RUN,
        )
    )
    if not claimed:
        status = CompressionJob.objects.values_list("status", flat=True).get(pk=job.pk)
        raise ModelHubConflict(
            f"Only failed, cancelled or stalled jobs can be retried; this one is {status}."
        )
    job = CompressionJob.objects.select_related("model").get(pk=job.pk)
    _append_log(job, ["retry queued"])
    _announce_and_enqueue(job)
    return job


# What a new attempt starts without.
_CLEARED_RUN: dict[str, Any] = {"progress": 0.0, "stage": "", "report": None}


def _stale_running(now: datetime) -> Q:
    cutoff = now - JOB_STALE_AFTER
    return Q(status=CompressionJobStatus.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )


def _append_log(job: CompressionJob, lines: Sequence[str], *also: str) -> None:
    """Append timestamped lines to the job's log (its last MAX_LOG_CHARS are kept) and
    save it, with the fields named in `also`."""
    if lines:
        stamp = timezone.now().strftime("%H:%M:%S")
        added = "".join(f"{stamp} {_line(line)}\n" for line in lines)
        text = job.log + added
        if len(text) > MAX_LOG_CHARS:
            cut = text.find("\n", len(text) - MAX_LOG_CHARS) + 1
            text = "[earlier lines dropped]\n" + text[cut:]
        job.log = text
    job.save(update_fields=["log", *also] if lines else list(also))


def _line(text: str) -> str:
    return " ".join(text.split("\n"))[:MAX_LOG_LINE_CHARS]


# --- what the Celery task records -------------------------------------------------------
@transaction.atomic
def start_attempt(job_id: uuid.UUID | str) -> int | None:
    """Claim a queued job, or take over a running one whose worker stopped beating.

    Returns the new attempt number, or None when the job is not (or no longer) there to
    claim. A conditional UPDATE: of two workers at once, one wins.
    """
    now = timezone.now()
    start = {
        "status": CompressionJobStatus.RUNNING,
        "attempts": F("attempts") + 1,
        "started_at": now,
        "heartbeat_at": now,
        **_CLEARED_RUN,
    }
    claimable = Q(status=CompressionJobStatus.QUEUED) | _stale_running(now)
    if not CompressionJob.objects.filter(pk=job_id).filter(claimable).update(**start):
        return None
    job = CompressionJob.objects.select_related("model").get(pk=job_id)
    taken_over = " (taking over from a worker that stopped)" if job.attempts > 1 else ""
    _append_log(job, [f"attempt {job.attempts} started{taken_over}"])
    transaction.on_commit(lambda: events.publish_job_status(job))
    return job.attempts


def _attempt(job_id: uuid.UUID | str, attempt: int) -> QuerySet[CompressionJob]:
    """The job, if it is still running under this attempt."""
    return CompressionJob.objects.filter(
        pk=job_id, status=CompressionJobStatus.RUNNING, attempts=attempt
    )


@transaction.atomic
def beat(job_id: uuid.UUID | str, attempt: int) -> bool:
    """Record that the attempt's worker is alive; False if the job is no longer its."""
    return bool(_attempt(job_id, attempt).update(heartbeat_at=timezone.now()))


@transaction.atomic
def record_progress(
    job_id: uuid.UUID | str,
    attempt: int,
    progress: float,
    stage: str,
    lines: Sequence[str] = (),
) -> bool:
    """Store how far the attempt is, and append its new log lines; announce both.
    False if the job is no longer this attempt's."""
    job = _attempt(job_id, attempt).select_for_update().first()
    if job is None:
        return False
    job.progress = min(max(float(progress), 0.0), 1.0) if math.isfinite(progress) else 0.0
    job.stage = stage[:200]
    job.heartbeat_at = timezone.now()
    _append_log(job, lines, "progress", "stage", "heartbeat_at")
    sent = (job.progress, job.stage, [_line(line) for line in lines])
    transaction.on_commit(lambda: events.publish_job_progress(job_id, *sent))
    return True


@transaction.atomic
def record_log(job_id: uuid.UUID | str, attempt: int, lines: Sequence[str]) -> bool:
    """Append log lines without changing the progress. False if no longer ours."""
    job = _attempt(job_id, attempt).select_for_update().first()
    if job is None or not lines:
        return job is not None
    _append_log(job, lines)
    sent = (job.progress, job.stage, [_line(line) for line in lines])
    transaction.on_commit(lambda: events.publish_job_progress(job_id, *sent))
    return True


def record_result(
    job_id: uuid.UUID | str, attempt: int, report: Mapping[str, Any], out_dir: Path
) -> bool:
    """Store the variant files the engine wrote into `out_dir` and their rows (replacing an
    earlier attempt's), the report, and succeed. False if the job is no longer ours.

    The files are copied to the storage first, under a folder of this attempt's own, so
    that no other attempt can overwrite them; they are deleted again if the rows cannot be
    stored. The registered model's file is never touched: only its `metrics.measured` is
    set to this job's measurements of the original.
    """
    if not _attempt(job_id, attempt).exists():
        return False
    entries = list(report["variants"])
    with _files_removed_on_failure() as written:
        for entry in entries[1:]:
            source = out_dir / PurePath(entry["file"]).name
            with source.open("rb") as content:
                written.append(
                    default_storage.save(
                        f"variants/{job_id}/{attempt}/{source.name}", File(content)
                    )
                )
        stored = _store_result(job_id, attempt, report, entries, written)
    if not stored:
        _delete_files(written)
    return stored


@transaction.atomic
def _store_result(
    job_id: uuid.UUID | str,
    attempt: int,
    report: Mapping[str, Any],
    entries: list[Mapping[str, Any]],
    files: list[str],
) -> bool:
    job = _attempt(job_id, attempt).select_for_update().select_related("model").first()
    if job is None:
        return False
    replaced = list(Variant.objects.filter(job=job).values_list("file", flat=True))
    Variant.objects.filter(job=job).delete()
    made: dict[str, Variant] = {}
    for index, (entry, file) in enumerate(zip(entries[1:], files, strict=True), start=1):
        made[entry["name"]] = Variant.objects.create(
            job=job,
            model=job.model,
            parent=made.get(entry.get("parent") or ""),
            index=index,
            name=entry["name"][:100],
            recipe=entry["recipe"][:200],
            file=file,
            sha256=entry["sha256"],
            size_bytes=entry["size_bytes"],
            metrics=_json_safe({key: entry.get(key) for key in VARIANT_METRICS}),
            metrics_per_device=_json_safe(entry.get("devices") or {}),
        )
    now = timezone.now()
    job.report = _json_safe(report)
    job.status = CompressionJobStatus.SUCCEEDED
    job.progress = 1.0
    job.stage = "done"
    job.finished_at = job.heartbeat_at = now
    _append_log(
        job,
        [f"succeeded: {len(made)} variant(s) stored"],
        *("report", "status", "progress", "stage", "finished_at", "heartbeat_at"),
    )
    _record_measured_original(job, entries[0])
    _delete_files_on_commit(replaced)
    transaction.on_commit(lambda: _delete_other_attempts(str(job.id), attempt))
    transaction.on_commit(lambda: events.publish_job_status(job))
    return True


# What a variant's `metrics` keep of its report entry (the rest has fields of its own).
VARIANT_METRICS = (
    "accuracy",
    "accuracy_delta",
    "agreement",
    "params",
    "flops",
    "latency_ms",
    "speedup",
    "size_ratio",
    "notes",
    "pareto_optimal",
)
_MEASURED = ("accuracy", "agreement", "params", "flops", "size_bytes", "latency_ms", "devices")


def _record_measured_original(job: CompressionJob, original: Mapping[str, Any]) -> None:
    """The model's `metrics.measured`: this job's measurements of it (on its evaluation
    data and device profiles). Its file and everything else stay as registered."""
    model = ModelArtifact.objects.select_for_update().get(pk=job.model_id)
    measured = {key: original.get(key) for key in _MEASURED}
    measured.update(
        job=str(job.id), evaluation=str(job.evaluation_id), at=timezone.now().isoformat()
    )
    model.metrics = {**model.metrics, "measured": _json_safe(measured)}
    model.save(update_fields=["metrics"])


def _delete_other_attempts(job_id: str, attempt: int) -> None:
    """Files an earlier attempt stored before it died (it never stored their rows)."""
    folder = f"variants/{job_id}"
    try:
        attempts, _ = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for other in attempts:
        if other != str(attempt):
            _, names = default_storage.listdir(f"{folder}/{other}")
            _delete_files([f"{folder}/{other}/{name}" for name in names])


@transaction.atomic
def record_failure(job_id: uuid.UUID | str, attempt: int, error: str) -> bool:
    """Fail the attempt with `error`; the log is kept, the error appended to it."""
    return _finish(job_id, attempt, CompressionJobStatus.FAILED, error=error[:MAX_ERROR_CHARS])


@transaction.atomic
def record_cancelled(job_id: uuid.UUID | str, attempt: int) -> bool:
    return _finish(job_id, attempt, CompressionJobStatus.CANCELLED)


def _finish(job_id: uuid.UUID | str, attempt: int, status: str, error: str = "") -> bool:
    now = timezone.now()
    if not _attempt(job_id, attempt).update(
        status=status, error=error, finished_at=now, heartbeat_at=now
    ):
        return False
    job = CompressionJob.objects.select_related("model").get(pk=job_id)
    _append_log(job, [f"failed: {error}" if error else status])
    transaction.on_commit(lambda: events.publish_job_status(job))
    return True


def _json_safe(value: Any) -> Any:
    """`value` as PostgreSQL's jsonb takes it: non-finite numbers (an unbounded speedup)
    become null, numpy scalars plain numbers, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _user(user: Any) -> Any:
    return user if user is not None and user.is_authenticated else None
