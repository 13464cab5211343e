"""Signed rollouts with the real server and real agent processes.

A canary goes first and the rest follow; a failure injected in the canary (an agent whose
model quota cannot hold the new model) aborts the next rollout and every device that got
the new model is restored to the old one; a tampered artifact is refused by its hash and
the device keeps serving its model; a download cut halfway resumes where it stopped. The
deployments are created with the actions, as the API and the pages do; everything else
crosses real HTTP.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import onnx
import pytest

from deployments import actions
from deployments.models import Deployment, DeploymentStatus, TargetState
from devices.actions import create_enrollment_token
from devices.models import Device
from models_hub import actions as hub
from models_hub.models import ModelArtifact
from tests.conftest import ROOT
from tests.deployments.helpers import linear_classifier
from tests.integration.processes import PYTHON, Process, Processes
from tests.integration.proxy import CuttingProxy

pytestmark = pytest.mark.service

AGENTS = 5
INTERVAL_S = "0.5"
ROLLOUT_TIMEOUT_S = 60


class Fleet:
    """Enrolled agents, each running in its own process, reporting to `server_url`."""

    def __init__(
        self, processes: Processes, env: dict[str, str], root: Path, server_url: str
    ) -> None:
        self.processes, self.env, self.root, self.server_url = processes, env, root, server_url
        self.agents: dict[str, Process] = {}

    def enroll_and_start(self, names: list[str]) -> None:
        _, token = create_enrollment_token(
            created_by=None, max_uses=len(names), ttl=timedelta(minutes=10)
        )
        for name in names:
            self.enroll(name, token)
            self.start(name)

    def state_dir(self, name: str) -> Path:
        return self.root / name

    def enroll(self, name: str, token: str) -> None:
        enrolled = subprocess.run(
            [PYTHON, "-m", "edge_agent", "enroll", "--server", self.server_url, "--token", token,
             "--state-dir", str(self.state_dir(name)), "--name", name, "--tier", "end"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr

    def start(self, name: str, *extra: str) -> None:
        if name in self.agents:
            self.agents[name].stop()
        self.agents[name] = self.processes.start(
            f"{name}-{len(self.processes.started)}",
            [PYTHON, "-m", "edge_agent", "run", "--state-dir", str(self.state_dir(name)),
             "--interval", INTERVAL_S, *extra],
            self.env,
        )  # fmt: skip

    def active_sha256(self, name: str) -> str | None:
        """The model the agent serves, read off its disk (the `active` link's target)."""
        link = self.state_dir(name) / "models" / "active"
        return link.resolve().name if link.is_symlink() else None

    def devices(self, *names: str) -> list[Device]:
        return list(Device.objects.filter(name__in=names).order_by("name"))


@pytest.fixture
def fleet(processes: Processes, subprocess_env: dict[str, str], tmp_path: Path) -> Fleet:
    server = processes.server(subprocess_env)
    processes.wait_server_ready(server)
    fleet = Fleet(processes, subprocess_env, tmp_path / "agents", server.url)
    fleet.enroll_and_start([f"cam-{index}" for index in range(AGENTS)])
    return fleet


def register(tmp_path: Path, version: str, seed: int) -> ModelArtifact:
    path = linear_classifier(tmp_path / f"linear-{version}.onnx", seed)
    with path.open("rb") as upload:
        return hub.register_model(upload=upload, name="linear", version=version, created_by=None)


def deploy(model: ModelArtifact, devices: list[Device], **policy: Any) -> Deployment:
    return actions.create_deployment(
        model=model,
        variant=None,
        selector=actions.TargetSelector(kind="devices", devices=[d.pk for d in devices]),
        policy=actions.RolloutPolicy(device_timeout_s=ROLLOUT_TIMEOUT_S, **policy),
        created_by=None,
    )


def tamper_with_weights(path: Path) -> None:
    """Change one weight in the stored file: still a valid model, no longer the signed bytes
    (storage that was written to behind the control plane's back)."""
    weights = onnx.load(str(path)).graph.initializer[0].raw_data
    content = path.read_bytes()
    at = content.index(weights) + 1
    path.write_bytes(content[:at] + bytes([content[at] ^ 0xFF]) + content[at + 1 :])


def finished(deployment: Deployment) -> Deployment | None:
    deployment.refresh_from_db()
    return deployment if not deployment.is_open else None


def target_states(deployment: Deployment) -> dict[str, str]:
    return dict(deployment.targets.values_list("device__name", "state"))


def test_canary_then_the_rest_then_a_failed_canary_rolls_back_and_tampering_is_refused(
    fleet: Fleet, processes: Processes, tmp_path: Path
) -> None:
    names = [f"cam-{index}" for index in range(AGENTS)]
    v1, v2, v3 = (register(tmp_path, str(n), seed=n) for n in (1, 2, 3))

    # --- v1 to all five: the canary (1 of 5) first, the rest only once it is active ----
    first = deploy(v1, fleet.devices(*names), canary_percent=20, batch_percent=100)
    processes.wait_until(lambda: finished(first), "the v1 rollout to end", ROLLOUT_TIMEOUT_S)
    assert first.status == DeploymentStatus.SUCCEEDED, (first.ended_reason, target_states(first))
    canary = first.targets.get(phase=0)
    assert canary.device.name == "cam-0"
    for target in first.targets.filter(phase=1):
        assert canary.finished_at is not None and target.released_at is not None
        assert target.released_at >= canary.finished_at, "a batch went out before the canary"
    assert {name: fleet.active_sha256(name) for name in names} == dict.fromkeys(names, v1.sha256)

    # --- v2: a canary fails (cam-1's agent may keep 100 bytes of models) -> rollback ---
    fleet.start("cam-1", "--model-quota-bytes", "100")
    second = deploy(v2, fleet.devices(*names), canary_percent=40, batch_percent=100)
    processes.wait_until(lambda: finished(second), "the v2 rollout to end", ROLLOUT_TIMEOUT_S)
    assert second.status == DeploymentStatus.ROLLED_BACK, target_states(second)
    states = target_states(second)
    assert states["cam-1"] == TargetState.FAILED
    assert second.targets.get(device__name="cam-1").reason == "disk_full"
    # cam-0 got v2 or was getting it when the rollout aborted; either way it runs v1 again.
    assert states["cam-0"] in (TargetState.ROLLED_BACK, TargetState.FAILED)
    assert [states[f"cam-{i}"] for i in range(2, AGENTS)] == [TargetState.SKIPPED] * 3
    assert {name: fleet.active_sha256(name) for name in names} == dict.fromkeys(names, v1.sha256)

    # --- v3 with its stored bytes tampered with after registration: refused by hash ----
    tamper_with_weights(Path(v3.file.path))
    third = deploy(v3, fleet.devices("cam-2"))
    processes.wait_until(lambda: finished(third), "the v3 rollout to end", ROLLOUT_TIMEOUT_S)
    refused = third.targets.get()
    assert (refused.state, refused.reason) == (TargetState.FAILED, "hash_mismatch"), refused.detail
    assert fleet.active_sha256("cam-2") == v1.sha256
    assert "hash_mismatch" in fleet.agents["cam-2"].log()


def test_a_download_cut_halfway_resumes_where_it_stopped(
    processes: Processes, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    server = processes.server(subprocess_env)
    processes.wait_server_ready(server)
    size = 8 << 20
    proxy = CuttingProxy(server.port, cut_after_bytes=size // 2, outage_s=1.5)
    try:
        fleet = Fleet(processes, subprocess_env, tmp_path / "agents", proxy.url)
        fleet.enroll_and_start(["cam-0"])
        path = linear_classifier(tmp_path / "big.onnx", seed=7, size_bytes=size)
        with path.open("rb") as upload:
            model = hub.register_model(upload=upload, name="big", version="1", created_by=None)
        deployment = deploy(model, fleet.devices("cam-0"))
        processes.wait_until(lambda: finished(deployment), "the rollout to end", ROLLOUT_TIMEOUT_S)
        assert deployment.status == DeploymentStatus.SUCCEEDED, target_states(deployment)
        assert proxy.cuts == 1
        resumed_from = [int(r.removeprefix("bytes=").rstrip("-")) for r in proxy.ranges_asked()]
        assert resumed_from and 0 < resumed_from[0] < size, proxy.ranges_asked()
        assert fleet.active_sha256("cam-0") == model.sha256
    finally:
        proxy.close()
