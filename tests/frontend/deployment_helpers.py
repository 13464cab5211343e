"""Shared by the rollout page, WebSocket and browser tests: ONNX models and variants to
deploy (tiny linear classifiers made with onnx.helper), a fleet, deployments started
through the action, and agents' reports played by calls to the action behind the agents'
API."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from deployments import actions
from deployments.actions import RolloutPolicy, StatusReport, TargetSelector
from deployments.models import Deployment, DeploymentTarget, InstalledModel
from devices.models import Device
from models_hub import actions as hub
from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    DatasetPurpose,
    ModelArtifact,
    Variant,
)
from tests.deployments.helpers import linear_classifier
from tests.frontend.scheduling_helpers import DeviceProfile, make_fleet

# name, tier, GFLOPS, memory MB, idle W, busy W, cost per hour
ROLLOUT_FLEET: list[DeviceProfile] = [
    ("cam-1", "end", 12.0, 4096, 2.0, 7.0, 0.0),
    ("cam-2", "end", 12.0, 4096, 2.0, 7.0, 0.0),
    ("cam-3", "end", 10.0, 4096, 2.0, 6.5, 0.0),
    ("cam-4", "end", 10.0, 2048, 1.5, 5.0, 0.0),
    ("mec-1", "edge", 250.0, 16384, 30.0, 90.0, 0.3),
]


def rollout_fleet(profiles: Sequence[DeviceProfile] = ROLLOUT_FLEET) -> list[Device]:
    """Online devices; the cameras carry `site=north` (cam-1, cam-2) or `site=south`."""
    devices = make_fleet(profiles)
    for device in devices:
        if device.tier == "end":
            device.labels = {"site": "north" if device.name in ("cam-1", "cam-2") else "south"}
            device.save(update_fields=["labels"])
    return devices


def onnx_model(
    folder: Path, user: Any, name: str = "linear", version: str = "1", seed: int = 1
) -> ModelArtifact:
    """A registered ONNX model: 4 inputs, 3 classes."""
    path = linear_classifier(folder / f"{name}-{version}.onnx", seed)
    with path.open("rb") as upload:
        return hub.register_model(upload=upload, name=name, version=version, created_by=user)


def variant_of(model: ModelArtifact, folder: Path, name: str = "int8-static") -> Variant:
    """A variant of `model` as a finished compression job stores one; its file is another
    linear classifier. Written directly: these tests deploy variants, not make them."""
    datasets = [
        Dataset.objects.create(
            name=f"data-{purpose}",
            purpose=purpose,
            file=f"datasets/{purpose}.npz",
            sha256="0" * 64,
            size_bytes=1,
            samples=1,
            sample_shape=[4],
            labelled=True,
            num_classes=3,
        )
        for purpose in (DatasetPurpose.CALIBRATION, DatasetPurpose.EVALUATION)
    ]
    job = CompressionJob.objects.create(
        model=model,
        recipe=name,
        calibration=datasets[0],
        evaluation=datasets[1],
        device_profiles=[],
        status=CompressionJobStatus.SUCCEEDED,
    )
    data = linear_classifier(folder / f"{name}.onnx", seed=7).read_bytes()
    stored = default_storage.save(f"variants/{job.id}/{name}.onnx", ContentFile(data))
    return Variant.objects.create(
        job=job,
        model=model,
        index=1,
        name=name,
        recipe=name,
        file=stored,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        metrics={"accuracy": 0.9, "pareto_optimal": True},
    )


def deploy(
    model: ModelArtifact,
    devices: Sequence[Device],
    variant: Variant | None = None,
    user: Any = None,
    name: str = "",
    **policy: Any,
) -> Deployment:
    return actions.create_deployment(
        model=model,
        variant=variant,
        selector=TargetSelector(kind="devices", devices=[device.pk for device in devices]),
        policy=RolloutPolicy(**policy),
        created_by=user,
        name=name,
    )


def report(
    device: Device,
    state: str,
    *,
    progress: float = 0.0,
    reason: str = "",
    detail: str = "",
) -> DeploymentTarget:
    """What the device's agent reports about the order it holds, as the agents' API would
    pass it on: once active, it serves the order's artifact; until then (and after a
    failure) whatever it served before."""
    device.refresh_from_db()
    order = device.desired_model
    assert order is not None, f"{device.name} holds no order"
    signed = order["manifest"]["signed"]
    serving: tuple[str, int] | None = None
    if state == "active":
        if signed["artifact"] is not None:
            serving = (signed["artifact"]["sha256"], signed["version"])
    else:
        before = InstalledModel.objects.filter(device=device).first()
        if before is not None and before.sha256 and before.version is not None:
            serving = (before.sha256, before.version)
    return actions.record_model_status(
        device,
        StatusReport(
            deployment_id=order["deployment_id"],
            version=signed["version"],
            state=state,
            progress=progress,
            reason=reason,
            detail=detail,
            active_sha256=serving[0] if serving else None,
            active_version=serving[1] if serving else None,
        ),
    )
