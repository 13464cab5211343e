"""Model hub actions: registration keeps rows and files together, submission checks
everything before queueing and freezes the fleet's device classes, and jobs move between
states only as they may."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError

from devices.models import Device, DeviceStatus
from models_hub import actions
from models_hub.fleet import MAX_PROFILES, device_classes, device_profiles
from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    DatasetPurpose,
    ModelArtifact,
)
from models_hub.tasks import run_compression_job
from tests.models_hub.conftest import register_dataset, register_model, stored_files, submit
from tests.models_hub.test_tasks import make_stale


def make_device(name: str, tier: str, gflops: float, power: float, **extra: Any) -> Device:
    fields = {"status": DeviceStatus.ONLINE, "cpu_cores": 4, "memory_mb": 4096}
    return Device.objects.create(
        name=name,
        tier=tier,
        gflops=gflops,
        power_idle_w=1.0,
        power_busy_w=power,
        **{**fields, **extra},
    )


# --- registration -----------------------------------------------------------------------
def test_a_file_stored_for_a_row_that_fails_is_deleted(
    files: dict[str, Path], operator: Any, media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise IntegrityError("the database refused the row")

    monkeypatch.setattr(ModelArtifact, "save", refused)
    with pytest.raises(actions.ModelHubError) as refusal:
        register_model(files["model.onnx"], operator)
    assert refusal.value.field == "version"
    monkeypatch.setattr(Dataset, "save", refused)
    with pytest.raises(IntegrityError):
        register_dataset(files["calib.npz"], DatasetPurpose.CALIBRATION, operator)
    assert stored_files(media) == []


def test_an_onnx_model_with_free_axes_needs_a_shape(
    files: dict[str, Path], operator: Any, tmp_path: Path
) -> None:
    import onnx

    model = onnx.load(str(files["model.onnx"]))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "side"
    free = tmp_path / "free.onnx"
    onnx.save(model, str(free))
    with pytest.raises(actions.ModelHubError) as refusal:
        register_model(free, operator, input_shape=None)
    assert refusal.value.field == "input_shape"
    assert "[batch, 1, ?, ?]" in refusal.value.message
    artifact = register_model(free, operator, input_shape=[1, 16, 16])
    assert (artifact.input_shape, artifact.num_classes) == ([1, 16, 16], 10)


def test_an_upload_over_the_limit_is_refused_before_it_is_read_whole(
    files: dict[str, Path], operator: Any, settings: Any, media: Path
) -> None:
    settings.TRIAD_MAX_MODEL_BYTES = 32 * 1024
    with pytest.raises(actions.ModelHubError) as refusal:
        register_model(files["model.pt"], operator)
    assert refusal.value.field == "file"
    assert stored_files(media) == []


# --- device profiles --------------------------------------------------------------------
def test_profiles_are_the_online_fleets_device_classes(db: Any) -> None:
    make_device("cam-b", "end", 8.04, 5.0)
    make_device("cam-a", "end", 7.98, 5.0)  # the same class: two significant figures
    make_device("gpu-box", "edge", 120.0, 65.0)
    make_device("cloud-0", "cloud", 900.0, 300.0)
    make_device("cam-off", "end", 3.0, 2.0, status=DeviceStatus.OFFLINE)
    make_device("unmeasured", "edge", 0.0, 10.0)
    classes = device_classes()
    assert [(c["name"], c["devices"]) for c in classes] == [
        ("cloud (cloud-0)", 1),
        ("edge (gpu-box)", 1),
        ("end (cam-a +1)", 2),
    ]
    assert classes[2]["gflops"] == pytest.approx(8.01)
    assert device_profiles()[2] == {"name": "end (cam-a +1)", "gflops": 8.01, "power_busy_w": 5.0}


def test_at_most_a_few_profiles_the_largest_classes(db: Any) -> None:
    for i in range(MAX_PROFILES + 2):
        for copy in range(1 if i < 2 else 2):
            make_device(f"edge-{i}-{copy}", "edge", 10.0 * (i + 1), 10.0)
    names = [c["name"] for c in device_classes()]
    assert len(names) == MAX_PROFILES
    assert not any(name.startswith(("edge (edge-0", "edge (edge-1")) for name in names)


def test_every_tier_keeps_a_profile_when_classes_are_many(db: Any) -> None:
    for i in range(MAX_PROFILES + 2):  # one-off measurements: a class per device
        make_device(f"edge-{i}", "edge", 100.0 + 10 * i, 50.0)
    make_device("cam-0", "end", 8.0, 5.0)
    tiers = [c["name"].split(" ")[0] for c in device_classes()]
    assert len(tiers) == MAX_PROFILES
    assert tiers.count("end") == 1 and tiers.count("edge") == MAX_PROFILES - 1


def test_an_empty_fleet_gets_the_engines_default_profiles(db: Any) -> None:
    from models_hub.compression import DEFAULT_DEVICE_PROFILES

    assert device_profiles() == [p.as_dict() for p in DEFAULT_DEVICE_PROFILES]


def test_a_job_keeps_the_profiles_of_the_fleet_it_was_submitted_on(
    onnx_model: ModelArtifact, calibration_set: Dataset, evaluation_set: Dataset, operator: Any
) -> None:
    device = make_device("edge-0", "edge", 100.0, 50.0)
    job = submit(onnx_model, calibration_set, evaluation_set, operator)
    device.delete()
    make_device("cam-0", "end", 5.0, 3.0)
    job.refresh_from_db()
    assert job.device_profiles == [{"name": "edge (edge-0)", "gflops": 100.0, "power_busy_w": 50.0}]
    assert [p.name for p in actions.job_options(job).device_profiles] == ["edge (edge-0)"]


# --- submission -------------------------------------------------------------------------
def test_a_torchscript_or_onnx_model_can_only_be_quantised(
    onnx_model: ModelArtifact, calibration_set: Dataset, evaluation_set: Dataset, operator: Any
) -> None:
    for recipe in ("prune:0.5", "prune-distill:0.5+int8-static", "nas"):
        with pytest.raises(actions.ModelHubError) as refusal:
            submit(onnx_model, calibration_set, evaluation_set, operator, recipe=recipe)
        assert refusal.value.field == "recipe"
    assert not CompressionJob.objects.exists()


def test_fine_tuning_needs_labels_named_where_they_lack(
    torch_model: ModelArtifact,
    calibration_set: Dataset,
    evaluation_set: Dataset,
    operator: Any,
    files: dict[str, Path],
) -> None:
    unlabelled = register_dataset(files["unlabelled.npz"], DatasetPurpose.CALIBRATION, operator)
    with pytest.raises(actions.ModelHubError) as refusal:
        submit(torch_model, unlabelled, evaluation_set, operator, recipe="prune:0.5")
    assert refusal.value.field == "calibration"
    # Distillation learns from the teacher alone; quantisation needs no labels.
    submit(torch_model, unlabelled, evaluation_set, operator, recipe="prune-distill:0.5")
    submit(torch_model, unlabelled, evaluation_set, operator, recipe="int8-static")
    submit(
        torch_model,
        unlabelled,
        evaluation_set,
        operator,
        recipe="prune:0.5",
        training=calibration_set,
    )
    assert CompressionJob.objects.count() == 3


def test_an_unsent_task_fails_the_job_so_it_can_be_retried(
    job: CompressionJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broker_down(job_id: str) -> None:
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(run_compression_job, "delay", broker_down)
    actions._enqueue(str(job.id))
    job.refresh_from_db()
    assert job.status == CompressionJobStatus.FAILED
    assert "the broker is down" in job.error
    assert actions.retry_job(job).status == CompressionJobStatus.QUEUED


# --- cancel and retry -------------------------------------------------------------------
def test_cancelling_a_running_job_asks_its_worker(job: CompressionJob) -> None:
    actions.start_attempt(job.id)
    asked = actions.request_cancel(job)
    assert (asked.status, asked.cancel_requested) == (CompressionJobStatus.RUNNING, True)
    assert actions.request_cancel(job).cancel_requested  # asking twice is harmless
    with pytest.raises(actions.ModelHubConflict):
        actions.retry_job(job)  # its worker is alive


def test_a_stalled_job_is_cancelled_at_once_and_can_be_retried(job: CompressionJob) -> None:
    actions.start_attempt(job.id)
    make_stale(job)
    assert actions.retry_job(job).status == CompressionJobStatus.QUEUED
    actions.start_attempt(job.id)
    make_stale(job)
    cancelled = actions.request_cancel(job)
    assert cancelled.status == CompressionJobStatus.CANCELLED


def test_a_succeeded_job_is_neither_cancelled_nor_retried(succeeded_job: CompressionJob) -> None:
    with pytest.raises(actions.ModelHubConflict):
        actions.request_cancel(succeeded_job)
    with pytest.raises(actions.ModelHubConflict):
        actions.retry_job(succeeded_job)


def test_the_log_keeps_its_last_lines(job: CompressionJob, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "MAX_LOG_CHARS", 500)
    attempt = actions.start_attempt(job.id)
    assert attempt is not None
    for i in range(100):
        actions.record_log(job.id, attempt, [f"line {i}\nwith a break"])
    job.refresh_from_db()
    assert len(job.log) <= 500 + len("[earlier lines dropped]\n")
    assert job.log.startswith("[earlier lines dropped]\n")
    assert job.log.endswith("line 99 with a break\n")
