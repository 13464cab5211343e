"""The reconciler against the stand-in: installs, switches, every refusal, rotations.

Each failure test also asserts the other half of the contract: the device keeps serving
the model it had.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edge_agent.client import AgentClient, ModelOrder, parse_model_order
from edge_agent.deploy import DeployConfig, Reconciler
from edge_agent.manifest import TrustStore, key_id_of, public_key_raw, sign_document
from edge_agent.modelstore import InstalledVersion, Links, ModelStore

from .models import io_for, matmul_model
from .signing import make_key, manifest_body
from .standin import Reports, StandInControlPlane, wait_until

MODEL_A = matmul_model()
MODEL_B = matmul_model(weights=2 * np.eye(4, 3, dtype=np.float32))
MODEL_C = matmul_model(weights=3 * np.eye(4, 3, dtype=np.float32))
BAD_SHAPE = matmul_model(outputs=2)  # promises [null, 3] in io_for(), gives [1, 2]
FAST = DeployConfig(retry_base_s=0.01, retry_cap_s=0.05, progress_every_s=0.0)


@dataclass
class Agent:
    reconciler: Reconciler
    store: ModelStore
    reports: Reports
    trust: TrustStore
    served: list[InstalledVersion | None]
    trust_changes: list[dict[str, str] | None]

    def follow(self, order: dict[str, Any]) -> dict[str, Any]:
        """Reconcile ``order`` to its end; the last report."""
        parsed = parse_model_order(order)
        assert parsed is not None
        self.reconciler.reconcile(parsed)
        return self.reports.last

    def links(self) -> Links:
        return self.store.links()

    def sha(self, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


@pytest.fixture
def agent(control_plane: StandInControlPlane, tmp_path: Path) -> Iterator[Agent]:
    with make_agent(control_plane, tmp_path) as made:
        yield made


@contextmanager
def make_agent(
    plane: StandInControlPlane,
    tmp_path: Path,
    quota_bytes: int | None = None,
    trust: TrustStore | None = None,
    config: DeployConfig = FAST,
) -> Iterator[Agent]:
    _, credential = plane.register()
    store = ModelStore(tmp_path, quota_bytes)
    trust = trust if trust is not None else TrustStore.from_signing_json(plane.signing_info())
    reports = Reports()
    served: list[InstalledVersion | None] = []
    trust_changes: list[dict[str, str] | None] = []
    with AgentClient(plane.url, credential, timeout=httpx.Timeout(2.0)) as client:
        reconciler = Reconciler(
            store,
            trust,
            client,
            reports,
            config,
            on_trust_change=lambda t: trust_changes.append(t.to_signing_json()),
            on_active_change=served.append,
        )
        yield Agent(reconciler, store, reports, trust, served, trust_changes)
        reconciler.stop()


def install_a(agent: Agent, plane: StandInControlPlane) -> None:
    assert agent.follow(plane.publish(MODEL_A, io_for()))["state"] == "active"
    assert agent.links() == Links(agent.sha(MODEL_A), None)


def assert_still_serving_a(agent: Agent) -> None:
    assert agent.links().active == agent.sha(MODEL_A)
    active = agent.store.active()
    assert active is not None and active.model_path.read_bytes() == MODEL_A
    assert agent.reports.last["active"] == {"sha256": agent.sha(MODEL_A), "version": 1}


def failed_with(agent: Agent, order: dict[str, Any]) -> str:
    last = agent.follow(order)
    assert last["state"] == "failed", last
    return str(last["reason"])


# --- success paths


def test_an_install_downloads_verifies_switches_and_reports_each_step(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    last = agent.follow(order)
    assert agent.reports.states()[0] == "downloading"
    assert agent.reports.states()[-2:] == ["verifying", "active"]
    assert last == {
        "deployment_id": order["deployment_id"],
        "version": 1,
        "state": "active",
        "progress": 1.0,
        "reason": "",
        "detail": last["detail"],
        "active": {"sha256": agent.sha(MODEL_A), "version": 1},
    }
    assert "p50" in last["detail"]
    assert agent.links() == Links(agent.sha(MODEL_A), None)
    assert agent.served[-1] is not None and agent.served[-1].sha256 == agent.sha(MODEL_A)
    assert agent.store.record.highest_version == 1
    assert list(agent.store.partial_dir.iterdir()) == []


def test_a_second_install_keeps_the_first_as_previous_and_drops_older_ones(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    agent.follow(control_plane.publish(MODEL_B, io_for()))
    assert agent.links() == Links(agent.sha(MODEL_B), agent.sha(MODEL_A))
    agent.follow(control_plane.publish(MODEL_C, io_for()))
    assert agent.links() == Links(agent.sha(MODEL_C), agent.sha(MODEL_B))
    staged = sorted(p.name for p in agent.store.versions_dir.iterdir())
    assert staged == sorted([agent.sha(MODEL_B), agent.sha(MODEL_C)])


def test_a_server_ordered_rollback_to_the_previous_version_needs_no_download(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    agent.follow(control_plane.publish(MODEL_B, io_for()))
    requests = len(control_plane.artifact_requests)
    last = agent.follow(control_plane.publish(MODEL_A, io_for()))  # version 3, A's bytes
    assert len(control_plane.artifact_requests) == requests
    assert last["state"] == "active"
    assert last["active"] == {"sha256": agent.sha(MODEL_A), "version": 3}
    assert agent.links() == Links(agent.sha(MODEL_A), agent.sha(MODEL_B))


def test_a_damaged_previous_version_is_downloaded_again(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    agent.follow(control_plane.publish(MODEL_B, io_for()))
    previous = agent.store.previous()
    assert previous is not None
    previous.model_path.write_bytes(b"rot" + MODEL_A[3:])
    requests = len(control_plane.artifact_requests)
    assert agent.follow(control_plane.publish(MODEL_A, io_for()))["state"] == "active"
    assert len(control_plane.artifact_requests) == requests + 1
    active = agent.store.active()
    assert active is not None and active.model_path.read_bytes() == MODEL_A


def test_a_resigned_order_for_the_active_artifact_only_raises_the_version(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    requests = len(control_plane.artifact_requests)
    last = agent.follow(control_plane.publish(MODEL_A, io_for(), version=7))
    assert len(control_plane.artifact_requests) == requests
    assert last["active"] == {"sha256": agent.sha(MODEL_A), "version": 7}
    assert agent.store.record.highest_version == 7


def test_the_same_version_again_is_confirmed_without_work(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    agent.follow(order)
    requests, served = len(control_plane.artifact_requests), len(agent.served)
    assert agent.follow(order)["state"] == "active"
    assert (len(control_plane.artifact_requests), len(agent.served)) == (requests, served)


def test_the_same_version_is_confirmed_even_after_its_manifest_expired(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    order = control_plane.publish(MODEL_A, io_for(), expires_in=timedelta(seconds=1))
    agent.follow(order)
    agent.reconciler._now = lambda: manifest_expiry(order) + timedelta(hours=1)  # type: ignore[method-assign]
    assert agent.follow(order)["state"] == "active"


def manifest_expiry(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["manifest"]["signed"]["expires"])


def test_an_order_without_an_artifact_runs_no_model(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    last = agent.follow(control_plane.publish(None))
    assert (last["state"], last["version"], last["active"]) == ("active", 2, None)
    assert agent.links() == Links(None, agent.sha(MODEL_A))
    assert agent.served[-1] is None
    # and the kept version comes back without a download
    requests = len(control_plane.artifact_requests)
    assert agent.follow(control_plane.publish(MODEL_A, io_for()))["state"] == "active"
    assert len(control_plane.artifact_requests) == requests
    assert agent.links().active == agent.sha(MODEL_A)


# --- refusals: each keeps the model the device had


def test_tampered_bytes_are_refused_and_the_version_is_not_retried(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    order = control_plane.publish(MODEL_B, io_for())
    control_plane.add_artifact(
        MODEL_C[: len(MODEL_B)].ljust(len(MODEL_B), b"\0"), agent.sha(MODEL_B)
    )
    assert failed_with(agent, order) == "hash_mismatch"
    assert_still_serving_a(agent)
    assert not (agent.store.versions_dir / agent.sha(MODEL_B)).exists()
    requests = len(control_plane.artifact_requests)
    again = ModelStore(agent.store.root.parent)  # the failure survives a restart
    assert again.record.failed[2].reason == "hash_mismatch"
    assert failed_with(agent, order) == "hash_mismatch"
    assert len(control_plane.artifact_requests) == requests  # not downloaded again


def test_a_wrong_signature_is_refused_before_any_download(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    order = control_plane.publish(MODEL_B, io_for())
    order["manifest"]["signed"]["expires"] = "2099-01-01T00:00:00Z"
    requests = len(control_plane.artifact_requests)
    assert failed_with(agent, order) == "bad_signature"
    assert len(control_plane.artifact_requests) == requests
    assert_still_serving_a(agent)


def test_a_manifest_signed_by_another_key_is_unsigned(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    order = control_plane.publish(MODEL_B, io_for())
    order["manifest"] = sign_document(make_key("intruder"), order["manifest"]["signed"])
    assert failed_with(agent, order) == "unsigned"
    assert_still_serving_a(agent)


def test_a_replayed_older_manifest_is_a_rollback(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    old_b = control_plane.publish(MODEL_B, io_for())  # version 2, never delivered
    agent.follow(control_plane.publish(MODEL_C, io_for()))  # version 3
    assert failed_with(agent, old_b) == "rollback"
    assert agent.links().active == agent.sha(MODEL_C)


def test_an_expired_manifest_is_refused(agent: Agent, control_plane: StandInControlPlane) -> None:
    install_a(agent, control_plane)
    order = control_plane.publish(MODEL_B, io_for(), expires_in=timedelta(seconds=-1))
    assert failed_with(agent, order) == "expired"
    assert_still_serving_a(agent)


def test_too_many_bytes_are_a_size_mismatch(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    order = control_plane.publish(MODEL_B, io_for())
    control_plane.add_artifact(MODEL_B + b"\0" * 100_000, agent.sha(MODEL_B))
    assert failed_with(agent, order) == "size_mismatch"
    assert_still_serving_a(agent)
    assert list(agent.store.partial_dir.iterdir()) == []


def test_an_artifact_over_the_quota_is_disk_full(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    with make_agent(control_plane, tmp_path, quota_bytes=len(MODEL_A) + 10) as agent:
        install_a(agent, control_plane)
        assert failed_with(agent, control_plane.publish(MODEL_B, io_for())) == "disk_full"
        assert "--model-quota-bytes" in agent.reports.last["detail"]
        assert_still_serving_a(agent)


def test_a_failed_health_check_switches_back(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    served = len(agent.served)
    last = agent.follow(control_plane.publish(BAD_SHAPE, io_for()))
    assert (last["state"], last["reason"]) == ("failed", "health_check_failed")
    assert "shape" in last["detail"]
    assert_still_serving_a(agent)
    assert agent.links() == Links(agent.sha(MODEL_A), None)
    assert not (agent.store.versions_dir / agent.sha(BAD_SHAPE)).exists()
    assert len(agent.served) == served  # the inference loop never saw the bad model


def test_a_model_over_its_latency_budget_is_refused(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    order = control_plane.publish(MODEL_B, io_for(), latency_budget_ms=0.0)
    assert failed_with(agent, order) == "health_check_failed"
    assert_still_serving_a(agent)


def test_an_order_of_a_rolled_back_version_after_a_failed_switch_back(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    agent.follow(control_plane.publish(MODEL_B, io_for()))
    # the server rolls back to A, but with a budget A cannot meet: B keeps serving
    order = control_plane.publish(MODEL_A, io_for(), latency_budget_ms=0.0)
    assert failed_with(agent, order) == "health_check_failed"
    assert agent.links() == Links(agent.sha(MODEL_B), agent.sha(MODEL_A))


# --- downloads that break


def test_a_truncated_download_resumes(agent: Agent, control_plane: StandInControlPlane) -> None:
    install_a(agent, control_plane)
    control_plane.cut_artifacts_after = [40]
    order = control_plane.publish(MODEL_B, io_for())
    assert agent.follow(order)["state"] == "active"
    ranges = [r for sha, r in control_plane.artifact_requests if sha == agent.sha(MODEL_B)]
    assert ranges == [None, "bytes=40-"]
    retry = [b for b in agent.reports.bodies if b["reason"] == "download_failed"]
    assert retry and retry[0]["state"] == "downloading"  # an outage is no failed device


def test_a_server_gone_mid_download_is_resumed_when_it_returns(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    slow_retries = DeployConfig(retry_base_s=0.05, retry_cap_s=0.2, progress_every_s=0.0)
    with make_agent(control_plane, tmp_path, config=slow_retries) as agent:
        install_a(agent, control_plane)
        order = control_plane.publish(MODEL_B, io_for())
        control_plane.cut_artifacts_after = [50]
        control_plane.go_away_after_cut = True
        agent.reconciler.start()
        agent.reconciler.offer(parse_model_order(order))
        wait_until(lambda: sum(b["reason"] == "download_failed" for b in agent.reports.bodies) >= 2)
        assert_still_serving_a_while_downloading(agent)
        part = agent.store.part_path(agent.sha(MODEL_B))
        assert part.stat().st_size == 50
        control_plane.go_away_after_cut = False
        control_plane.start()
        wait_until(lambda: agent.reports.last["state"] == "active")
        assert agent.links() == Links(agent.sha(MODEL_B), agent.sha(MODEL_A))
        assert control_plane.artifact_requests[-1] == (agent.sha(MODEL_B), "bytes=50-")


def assert_still_serving_a_while_downloading(agent: Agent) -> None:
    assert agent.links().active == agent.sha(MODEL_A)
    assert agent.reports.last["active"] == {"sha256": agent.sha(MODEL_A), "version": 1}


def test_a_newer_order_supersedes_a_download_that_keeps_failing(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    patient = DeployConfig(retry_base_s=5.0, retry_cap_s=5.0, progress_every_s=0.0)
    with make_agent(control_plane, tmp_path, config=patient) as agent:
        install_a(agent, control_plane)
        control_plane.artifact_status = 503
        stuck = control_plane.publish(MODEL_B, io_for())
        agent.reconciler.start()
        agent.reconciler.offer(parse_model_order(stuck))
        wait_until(lambda: agent.reports.last["reason"] == "download_failed")
        agent.reconciler.offer(parse_model_order(control_plane.publish(None)))
        wait_until(lambda: agent.links().active is None)
        assert agent.reports.last["deployment_id"] != stuck["deployment_id"]
        assert agent.reports.last["state"] == "active"


def test_the_thread_ignores_a_repeated_order(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    order = parse_model_order(control_plane.publish(MODEL_A, io_for()))
    agent.reconciler.start()
    agent.reconciler.offer(order)
    wait_until(lambda: agent.reports.states()[-1:] == ["active"])
    for _ in range(3):
        agent.reconciler.offer(copy.deepcopy(order))
        agent.reconciler.offer(None)  # no order: keep what runs
    agent.reconciler.stop()
    assert agent.reports.states().count("active") == 1


# --- trust


def test_a_rotation_signed_by_the_pinned_key_is_adopted(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    control_plane.rotate_key("stand-in-2")
    control_plane.rotate_key("stand-in-3")
    assert agent.follow(control_plane.publish(MODEL_B, io_for()))["state"] == "active"
    newest = key_id_of(public_key_raw(make_key("stand-in-3")))
    assert list(agent.trust.keys) == [newest]
    assert agent.trust_changes[-1] is not None and agent.trust_changes[-1]["key_id"] == newest


def test_a_rotation_signed_by_an_unknown_key_is_not_adopted(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    install_a(agent, control_plane)
    pinned = list(agent.trust.keys)
    control_plane.signing_key = make_key("intruder")  # not a rotation: a different server
    control_plane.rotate_key("intruder-2")
    assert failed_with(agent, control_plane.publish(MODEL_B, io_for())) == "unsigned"
    assert list(agent.trust.keys) == pinned and agent.trust_changes == []
    assert_still_serving_a(agent)


def test_an_agent_without_a_pinned_key_refuses_every_order_and_says_to_re_enroll(
    control_plane: StandInControlPlane, tmp_path: Path
) -> None:
    with make_agent(control_plane, tmp_path, trust=TrustStore()) as agent:
        assert failed_with(agent, control_plane.publish(MODEL_A, io_for())) == "unsigned"
        assert "enroll it again" in agent.reports.last["detail"]
        assert agent.links() == Links(None, None)


def test_an_order_without_a_manifest_is_malformed(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    order["manifest"] = None
    assert failed_with(agent, order) == "malformed"
    assert agent.reports.last["version"] == 1  # the server numbers from 1


def test_an_order_without_an_artifact_url_is_malformed(
    agent: Agent, control_plane: StandInControlPlane
) -> None:
    order = control_plane.publish(MODEL_A, io_for())
    order["artifact_url"] = None
    assert failed_with(agent, order) == "malformed"


def test_an_order_is_parsed_leniently_but_needs_a_deployment_id() -> None:
    assert parse_model_order(None) is None
    assert parse_model_order({"manifest": {}}) is None
    order = parse_model_order(
        {"deployment_id": "d", "health_check": {"latency_budget_ms": "x", "probe_runs": 0}}
    )
    assert order == ModelOrder("d", None, None, None, 1, ())
    body = manifest_body(1, None)
    assert parse_model_order({"deployment_id": "d", "manifest": body}) is not None
