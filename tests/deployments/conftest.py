"""Fixtures of the rollout tests: a key ring and a MEDIA_ROOT per test, two versions of a
registered ONNX model, and a fleet of enrolled devices."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devices.actions import HardwareProfile, create_enrollment_token, enroll_device
from devices.models import Device
from models_hub import actions as hub
from models_hub.models import ModelArtifact
from tests.conftest import HARDWARE
from tests.deployments.helpers import linear_classifier


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(autouse=True)
def signing_dir(settings: Any, tmp_path: Path) -> Path:
    settings.TRIAD_SIGNING_KEY_DIR = tmp_path / "signing"
    return settings.TRIAD_SIGNING_KEY_DIR


def register(tmp_path: Path, version: str, seed: int) -> ModelArtifact:
    path = linear_classifier(tmp_path / f"linear-{version}.onnx", seed)
    with path.open("rb") as upload:
        return hub.register_model(upload=upload, name="linear", version=version, created_by=None)


@pytest.fixture
def model_v1(db: Any, tmp_path: Path) -> ModelArtifact:
    return register(tmp_path, "1", seed=1)


@pytest.fixture
def model_v2(db: Any, tmp_path: Path) -> ModelArtifact:
    return register(tmp_path, "2", seed=2)


FleetFactory = Callable[..., list[tuple[Device, str]]]


@pytest.fixture
def fleet(db: Any) -> FleetFactory:
    """`fleet(n, tier=..., labels=...)`: n devices named cam-0.. and their credentials."""
    made = 0

    def make(count: int, tier: str = "end", labels: dict[str, str] | None = None) -> list:
        nonlocal made
        _, secret = create_enrollment_token(created_by=None, max_uses=count, ttl=timedelta(hours=1))
        devices = []
        for _ in range(count):
            devices.append(
                enroll_device(
                    token=secret,
                    name=f"cam-{made}",
                    tier=tier,
                    hardware=HardwareProfile(**HARDWARE),
                    labels=labels or {},
                )
            )
            made += 1
        return devices

    return make
