"""Model-status reports: never block, keep the latest per deployment, resend it later."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from edge_agent.client import AgentClient, model_status_body
from edge_agent.status import StatusReporter

from .standin import StandInControlPlane, wait_until


@pytest.fixture
def client(control_plane: StandInControlPlane) -> Iterator[AgentClient]:
    _, credential = control_plane.register()
    with AgentClient(control_plane.url, credential, timeout=httpx.Timeout(2.0)) as opened:
        yield opened


def reporter_for(client: AgentClient) -> StatusReporter:
    return StatusReporter(
        client.report_model_status, random.Random(0), backoff_base_s=0.02, backoff_cap_s=0.05
    ).start()


def test_reports_reach_the_server_in_order(
    control_plane: StandInControlPlane, client: AgentClient
) -> None:
    reporter = reporter_for(client)
    reporter.report(model_status_body("d-1", 4, "downloading", 0.5))
    wait_until(lambda: len(control_plane.reports()) == 1)
    reporter.report(model_status_body("d-1", 4, "active", 1.0, active=("a" * 64, 4)))
    wait_until(lambda: len(control_plane.reports()) == 2)
    reporter.stop()
    assert [r["state"] for r in control_plane.reports()] == ["downloading", "active"]
    assert control_plane.reports()[1]["active"] == {"sha256": "a" * 64, "version": 4}


def test_while_the_server_is_away_only_the_latest_report_per_deployment_waits(
    control_plane: StandInControlPlane, client: AgentClient
) -> None:
    control_plane.status_fail_with = 503
    reporter = reporter_for(client)
    for progress in (0.1, 0.5, 0.9):
        reporter.report(model_status_body("d-1", 4, "downloading", progress))
    reporter.report(model_status_body("d-2", 5, "failed", 0.0, "expired", "too old"))
    reporter.report(model_status_body("d-1", 4, "active", 1.0))
    assert [(r["deployment_id"], r["state"]) for r in reporter.pending()] == [
        ("d-2", "failed"),
        ("d-1", "active"),
    ]
    control_plane.status_fail_with = None
    wait_until(lambda: not reporter.pending())
    reporter.stop()
    sent = [(r["deployment_id"], r["state"]) for r in control_plane.reports()]
    assert sent == [("d-2", "failed"), ("d-1", "active")]


def test_a_report_the_server_refuses_is_dropped(
    control_plane: StandInControlPlane, client: AgentClient
) -> None:
    reporter = reporter_for(client)
    body = model_status_body("d-1", 4, "failed", 0.0, "hash_mismatch")
    body["reason"] = ""  # the stand-in, like the server, answers 400
    reporter.report(body)
    reporter.report(model_status_body("d-2", 4, "active", 1.0))
    wait_until(lambda: not reporter.pending())
    reporter.stop()
    assert [r["deployment_id"] for r in control_plane.reports()] == ["d-2"]


def test_the_body_is_the_contracts() -> None:
    assert model_status_body("d", 3, "failed", 2.0, "rollback", "x" * 5000) == {
        "deployment_id": "d",
        "version": 3,
        "state": "failed",
        "progress": 1.0,
        "reason": "rollback",
        "detail": "x" * 1000,
        "active": None,
    }
    with pytest.raises(ValueError):
        model_status_body("d", 3, "installing")
