"""The compression task, run in this process: a real (tiny) compression job, its variants
and files, progress and events, cancellation, failure, and fencing of stale attempts.

tests/integration/test_compression_worker.py runs it in a real worker.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from controlplane.celery import app
from models_hub import actions, events, tasks
from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    ModelArtifact,
    Variant,
)
from models_hub.tasks import Heartbeat, claim_job, compress_job, run_compression_job
from tests.models_hub.conftest import run_here, stored_files, submit


def make_stale(job: CompressionJob) -> None:
    CompressionJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )


def test_the_task_goes_to_the_compression_queue() -> None:
    route = app.amqp.router.route({}, run_compression_job.name)
    assert route["queue"].name == tasks.QUEUE == "compression"


def test_int8_job_stores_its_variant_and_never_touches_the_original(
    job: CompressionJob, media: Path, files: dict[str, Path]
) -> None:
    original = job.model
    original_bytes = (media / original.file.name).read_bytes()
    registered = ModelArtifact.objects.filter(pk=original.pk).values().get()

    run_here(job)

    assert (job.status, job.attempts, job.error) == (CompressionJobStatus.SUCCEEDED, 1, "")
    assert (job.progress, job.stage) == (1.0, "done")
    assert job.started_at is not None and job.finished_at is not None
    variant = Variant.objects.get(job=job)
    assert (variant.name, variant.recipe, variant.parent, variant.model) == (
        "int8-static",
        "int8-static",
        None,
        original,
    )
    stored = media / variant.file.name
    assert variant.file.name == f"variants/{job.id}/1/int8-static.onnx"
    assert actions.file_sha256(stored) == variant.sha256
    assert stored.stat().st_size == variant.size_bytes
    # int8 quantisation keeps the tiny model's accuracy within a few points.
    assert variant.metrics["accuracy_delta"] > -5.0
    assert variant.metrics["agreement"] > 0.85
    assert set(variant.metrics_per_device) == {p["name"] for p in job.device_profiles}
    report = job.report
    assert report is not None and report["variants"][1]["sha256"] == variant.sha256
    assert [line for line in job.log.splitlines() if "int8-static: measuring" in line]
    # The original: same bytes, same row but for the measurements of it.
    assert (media / original.file.name).read_bytes() == original_bytes
    now = ModelArtifact.objects.filter(pk=original.pk).values().get()
    assert {k: v for k, v in now.items() if k != "metrics"} == {
        k: v for k, v in registered.items() if k != "metrics"
    }
    measured = now["metrics"]["measured"]
    assert measured["job"] == str(job.id)
    assert measured["accuracy"] == report["variants"][0]["accuracy"]
    assert stored_files(media) == sorted(
        [original.file.name, job.calibration.file.name, job.evaluation.file.name, variant.file.name]
    )


def test_a_chain_links_each_variant_to_its_parent(
    torch_model: ModelArtifact, calibration_set: Dataset, evaluation_set: Dataset, operator: Any
) -> None:
    job = submit(
        torch_model,
        calibration_set,
        evaluation_set,
        operator,
        recipe="prune-distill:0.5+int8-static",
        parameters={"epochs": 1},
    )
    run_here(job)
    assert job.status == CompressionJobStatus.SUCCEEDED, (job.error, job.log)
    pruned, quantised = Variant.objects.filter(job=job).order_by("index")
    assert (pruned.name, pruned.parent) == ("prune-distill:0.5", None)
    assert (quantised.name, quantised.parent) == ("prune-distill:0.5+int8-static", pruned)
    assert job.report is not None
    assert pruned.metrics["flops"] < job.report["variants"][0]["flops"]
    assert "epoch 1" in job.log


def test_a_second_delivery_changes_nothing(succeeded_job: CompressionJob) -> None:
    stored = set(Variant.objects.filter(job=succeeded_job).values_list("id", flat=True))
    assert run_compression_job(str(succeeded_job.id)) == "not claimed"
    assert set(Variant.objects.filter(job=succeeded_job).values_list("id", flat=True)) == stored


def test_unknown_job_is_not_claimed(db: Any) -> None:
    assert run_compression_job("00000000-0000-0000-0000-000000000000") == "not claimed"


def test_events_announce_each_status_and_the_progress(
    job: CompressionJob, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(
        events, "send_to_groups", lambda groups, message: sent.append((groups, message))
    )
    with django_capture_on_commit_callbacks(execute=True):
        run_here(job)
    statuses = [m["job"]["status"] for _, m in sent if m["type"] == "job.status"]
    assert statuses == ["running", "succeeded"]
    for groups, message in sent:
        if message["type"] == "job.status":
            assert groups == [events.job_group(job.id), events.JOBS_GROUP]
        else:
            assert groups == [events.job_group(job.id)]
    progress = [m for _, m in sent if m["type"] == "job.progress"]
    assert progress and all(m["job"] == str(job.id) for m in progress)
    assert progress[-1]["progress"] == 1.0
    assert any("original: measuring" in line for m in progress for line in m["lines"])
    final = sent[-1][1]["job"]
    assert (final["variants"], final["model_name"]) == (1, job.model.name)


def test_cancel_requested_stops_the_engine(job: CompressionJob) -> None:
    attempt = actions.start_attempt(job.id)
    assert attempt is not None
    actions.request_cancel(job)
    assert compress_job(CompressionJob.objects.get(pk=job.pk), attempt) == "cancelled"
    job.refresh_from_db()
    assert job.status == CompressionJobStatus.CANCELLED and job.finished_at is not None
    assert not Variant.objects.filter(job=job).exists()
    assert job.log.splitlines()[-1].endswith("cancelled")


def test_takeover_of_a_job_whose_cancel_was_asked_cancels_it(job: CompressionJob) -> None:
    actions.start_attempt(job.id)
    actions.request_cancel(job)
    make_stale(job)
    assert run_compression_job(str(job.id)) == CompressionJobStatus.CANCELLED
    job.refresh_from_db()
    assert (job.status, job.attempts) == (CompressionJobStatus.CANCELLED, 2)


def test_an_engine_refusal_fails_the_job_and_keeps_the_log(job: CompressionJob) -> None:
    CompressionJob.objects.filter(pk=job.pk).update(parameters={"calibration": "guess"})
    assert run_compression_job(str(job.id)) == CompressionJobStatus.FAILED
    job.refresh_from_db()
    assert job.status == CompressionJobStatus.FAILED
    assert job.error.startswith("parameters.calibration: ")
    assert "attempt 1 started" in job.log and "failed: parameters.calibration" in job.log
    assert not Variant.objects.filter(job=job).exists()
    retried = actions.retry_job(job)
    assert retried.status == CompressionJobStatus.QUEUED and retried.error == ""
    assert "failed: parameters.calibration" in retried.log  # kept across attempts


def test_a_model_file_changed_on_disk_fails_the_job(job: CompressionJob, media: Path) -> None:
    (media / job.model.file.name).write_bytes(b"tampered")
    assert run_compression_job(str(job.id)) == CompressionJobStatus.FAILED
    job.refresh_from_db()
    assert "no longer has its registered sha256" in job.error


def test_a_result_that_cannot_be_stored_fails_the_job_and_leaves_no_file(
    job: CompressionJob, media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost_database(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("the database went away")

    monkeypatch.setattr(actions, "_store_result", lost_database)
    before = stored_files(media)
    assert run_compression_job(str(job.id)) == CompressionJobStatus.FAILED
    job.refresh_from_db()
    assert job.error == "storing the result: the database went away"
    assert stored_files(media) == before


def test_a_stale_attempts_writes_are_ignored(job: CompressionJob, media: Path) -> None:
    """A worker presumed dead that comes back finds every write refused, its variant files
    deleted again, and the job as the attempt that took over left it."""
    first = actions.start_attempt(job.id)
    assert first == 1
    make_stale(job)
    second = actions.start_attempt(job.id)
    assert second == 2
    assert actions.record_progress(job.id, 2, 0.3, "ours", ["line of attempt 2"])

    assert not actions.beat(job.id, 1)
    assert not actions.record_progress(job.id, 1, 0.9, "stale", ["line of attempt 1"])
    assert not actions.record_log(job.id, 1, ["another"])
    assert not actions.record_failure(job.id, 1, "stale failure")
    assert not actions.record_cancelled(job.id, 1)
    out = media.parent / "stale-out"
    out.mkdir()
    (out / "v.onnx").write_bytes(b"stale variant")
    report = {"variants": [{"name": "original"}, {"name": "v", "file": "v.onnx"}]}
    before = stored_files(media)
    assert not actions.record_result(job.id, 1, report, out)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.progress, job.stage) == ("running", 2, 0.3, "ours")
    assert "attempt 1" not in job.log.split("attempt 2 started")[1]
    assert "stale" not in job.log
    assert stored_files(media) == before
    assert not Variant.objects.exists()


def test_takeover_runs_the_job_again_and_drops_the_dead_attempts_files(
    job: CompressionJob, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    actions.start_attempt(job.id)
    orphan = media / f"variants/{job.id}/1/int8-static.onnx"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"written before the worker died")
    make_stale(job)
    with django_capture_on_commit_callbacks(execute=True):
        run_here(job)
    assert (job.status, job.attempts) == (CompressionJobStatus.SUCCEEDED, 2)
    assert "taking over" in job.log
    assert not orphan.exists()
    assert Variant.objects.get(job=job).file.name == f"variants/{job.id}/2/int8-static.onnx"


def test_duplicate_delivery_gives_up_while_the_owners_heartbeat_is_fresh(
    job: CompressionJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "JOB_STALE_AFTER", timedelta(seconds=0.2))
    monkeypatch.setattr(tasks, "HEARTBEAT_INTERVAL_S", 0.05)
    monkeypatch.setattr(tasks, "CLAIM_POLL_INTERVAL_S", 0.05)
    actions.start_attempt(job.id)
    assert claim_job(str(job.id)) is None
    assert CompressionJob.objects.get(pk=job.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_beats_until_the_block_ends(
    onnx_model: ModelArtifact,
    calibration_set: Dataset,
    evaluation_set: Dataset,
    operator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "HEARTBEAT_INTERVAL_S", 0.05)
    monkeypatch.setattr(run_compression_job, "delay", lambda job_id: None)  # no worker here
    job = submit(onnx_model, calibration_set, evaluation_set, operator)
    attempt = actions.start_attempt(job.id)
    assert attempt is not None
    started = CompressionJob.objects.get(pk=job.pk).heartbeat_at
    with Heartbeat(job.id, attempt) as heartbeat:
        time.sleep(0.5)
    assert not heartbeat.thread.is_alive()
    beat = CompressionJob.objects.get(pk=job.pk).heartbeat_at
    assert started is not None and beat is not None and beat > started
