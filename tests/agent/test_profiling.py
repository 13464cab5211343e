"""Profiling orders (docs/rollouts.md, "Profiling"): time a model, install nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge_agent.client import AgentClient, parse_model_order, parse_profile_order
from edge_agent.deploy import DeployConfig, Reconciler
from edge_agent.manifest import TrustStore, sign_document
from edge_agent.modelstore import Links, ModelStore

from .models import io_for, matmul_model
from .signing import make_key
from .standin import Reports, StandInControlPlane, wait_until

MODEL_A = matmul_model()
MODEL_B = matmul_model(weights=2 * np.eye(4, 3, dtype=np.float32))
FAST = DeployConfig(retry_base_s=0.01, retry_cap_s=0.05, progress_every_s=0.0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Agent:
    def __init__(self, plane: StandInControlPlane, state_dir: Path, client: AgentClient) -> None:
        self.store = ModelStore(state_dir)
        self.reports = Reports()
        self.results = Reports()
        self.reconciler = Reconciler(
            self.store,
            TrustStore.from_signing_json(plane.signing_info()),
            client,
            self.reports,
            FAST,
            profile_results=self.results,
        )

    def install(self, order: dict[str, Any]) -> None:
        parsed = parse_model_order(order)
        assert parsed is not None
        self.reconciler.reconcile(parsed)
        assert self.reports.last["state"] == "active"

    def profile(self, order: dict[str, Any]) -> dict[str, Any]:
        parsed = parse_profile_order(order)
        assert parsed is not None
        self.reconciler.profile(parsed)
        return self.results.last


@pytest.fixture
def agent(control_plane: StandInControlPlane, tmp_path: Path) -> Iterator[Agent]:
    _, credential = control_plane.register()
    with AgentClient(control_plane.url, credential, timeout=httpx.Timeout(2.0)) as client:
        made = Agent(control_plane, tmp_path, client)
        yield made
        made.reconciler.stop()


def test_a_profile_is_measured_and_nothing_is_installed(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    agent.install(control_plane.publish(MODEL_A, io_for()))
    order = control_plane.publish_profile(MODEL_B, io_for(), runs=7)
    result = agent.profile(order)
    assert result["run_id"] == order["run_id"] and result["state"] == "measured"
    assert 0 < result["p50_ms"] <= result["p95_ms"] and result["runs"] == 7
    assert agent.store.links() == Links(sha(MODEL_A), None)
    assert not (agent.store.versions_dir / sha(MODEL_B)).exists()
    assert list(agent.store.partial_dir.iterdir()) == []
    assert agent.store.record.highest_version == 1  # a profile accepts no version


def test_an_older_model_may_be_profiled(agent: Agent, control_plane: StandInControlPlane) -> None:
    old = control_plane.publish_profile(MODEL_B, io_for(), version=1)
    agent.install(control_plane.publish(MODEL_A, io_for(), version=5))
    assert agent.profile(old)["state"] == "measured"


def test_a_model_the_device_holds_is_profiled_without_a_download(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    agent.install(control_plane.publish(MODEL_A, io_for()))
    requests = len(control_plane.artifact_requests)
    assert agent.profile(control_plane.publish_profile(MODEL_A, io_for()))["state"] == "measured"
    assert len(control_plane.artifact_requests) == requests
    assert (agent.store.versions_dir / sha(MODEL_A) / "model.onnx").exists()


def test_tampered_bytes_fail_the_profile_and_keep_the_model(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    agent.install(control_plane.publish(MODEL_A, io_for()))
    order = control_plane.publish_profile(MODEL_B, io_for())
    control_plane.add_artifact(bytes(reversed(MODEL_B)), sha(MODEL_B))
    result = agent.profile(order)
    assert (result["state"], result["reason"]) == ("failed", "hash_mismatch")
    assert result["detail"] and "p50_ms" not in result
    assert agent.store.links() == Links(sha(MODEL_A), None)


def test_a_profile_signed_by_another_key_is_unsigned(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    order = control_plane.publish_profile(MODEL_B, io_for())
    order["manifest"] = sign_document(make_key("intruder"), order["manifest"]["signed"])
    assert agent.profile(order)["reason"] == "unsigned"


def test_the_thread_profiles_after_installing(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install = parse_model_order(control_plane.publish(MODEL_A, io_for()))
    profile = parse_profile_order(control_plane.publish_profile(MODEL_B, io_for()))
    agent.reconciler.start()
    agent.reconciler.offer_profile(profile)
    agent.reconciler.offer(install)
    wait_until(lambda: bool(agent.results.bodies))
    wait_until(lambda: agent.store.links().active == sha(MODEL_A))
    assert agent.results.last["state"] == "measured"
