"""Scheduling WebSockets: the events `scheduling.events` sends on commit reach the sockets of
the job page, the job list and the review queue, and only operators and admins get them.

The changes are made through the actions, so the events travel as in production (through
the SQLite channel layer, or Redis when REDIS_URL is set).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from scheduling import actions, events
from scheduling.models import SchedulingJob, Solution, SolutionKind
from scheduling.tasks import run_scheduling_job
from tests.frontend.scheduling_helpers import SMALL_RUN, make_fleet
from tests.frontend.test_live import open_socket

pytestmark = pytest.mark.django_db(transaction=True)


def queued_job(user: Any) -> SchedulingJob:
    make_fleet()
    workload = actions.create_workload_from_template(
        name="live", template="video-pipeline", parameters={"cameras": 1}, created_by=user
    )
    return actions.submit_job(
        workload=workload, created_by=user, objectives=["makespan", "energy"], **SMALL_RUN
    )


async def receive(socket: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next message of this kind (a job's status may be announced more than once)."""
    while True:
        message: dict[str, Any] = await socket.receive_json_from(timeout=5)
        if message["type"] == kind:
            return message


@pytest.mark.parametrize(
    "path",
    [f"/ws/scheduling/jobs/{uuid.uuid4()}/", "/ws/scheduling/jobs/", "/ws/scheduling/decisions/"],
)
async def test_sockets_refuse_anonymous_and_role_less_users(nobody: Any, path: str) -> None:
    for user in (None, nobody):
        socket, connected = await open_socket(path, user)
        assert not connected
        await socket.disconnect()


async def test_a_job_page_gets_status_and_progress(operator: Any) -> None:
    job = await sync_to_async(queued_job)(operator)
    socket, connected = await open_socket(f"/ws/scheduling/jobs/{job.id}/", operator)
    listing, listed = await open_socket("/ws/scheduling/jobs/", operator)
    assert connected and listed
    try:
        await sync_to_async(actions.request_cancel)(job)
        message = await receive(socket, "status")
        assert message["job"]["id"] == str(job.id) and message["job"]["status"] == "cancelled"
        message = await receive(listing, "status")
        assert message["job"]["status"] == "cancelled"

        entry = {"generation": 1, "evaluations": 8, "hypervolume": 0.5, "best": {"makespan": 2.0}}
        await sync_to_async(events.publish_job_progress)(job.id, [entry])
        message = await receive(socket, "progress")
        assert message["entries"] == [entry]
    finally:
        await socket.disconnect()
        await listing.disconnect()


async def test_a_whole_run_streams_to_the_job_page(operator: Any) -> None:
    job = await sync_to_async(queued_job)(operator)
    socket, connected = await open_socket(f"/ws/scheduling/jobs/{job.id}/", operator)
    assert connected
    try:
        await sync_to_async(run_scheduling_job)(str(job.id))
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1].get("job", {}).get("status") != "succeeded":
            seen.append(await socket.receive_json_from(timeout=10))
        generations = [
            e["generation"] for m in seen if m["type"] == "progress" for e in m["entries"]
        ]
        assert generations == list(range(1, SMALL_RUN["generations"] + 1))
        assert next(m["job"]["status"] for m in seen if m["type"] == "status") == "running"
    finally:
        await socket.disconnect()


async def test_decisions_reach_the_queue_and_the_job_page(operator: Any, admin_user: Any) -> None:
    job = await sync_to_async(queued_job)(operator)
    await sync_to_async(run_scheduling_job)(str(job.id))
    knee = await Solution.objects.aget(job=job, kind=SolutionKind.FRONT, is_knee=True)
    queue, queued = await open_socket("/ws/scheduling/decisions/", operator)
    page, opened = await open_socket(f"/ws/scheduling/jobs/{job.id}/", operator)
    assert queued and opened
    try:
        decision = await sync_to_async(actions.propose_decision)(
            solution=knee, proposed_by=operator, comment="knee"
        )
        message = await receive(queue, "decision")
        assert message["decision"]["id"] == str(decision.id)
        assert message["decision"]["status"] == "proposed"
        assert (await receive(page, "decision"))["decision"]["status"] == "proposed"

        await sync_to_async(actions.approve_decision)(
            decision, reviewed_by=admin_user, comment="ok"
        )
        message = await receive(queue, "decision")
        assert message["decision"]["status"] == "approved"
        assert message["decision"]["reviewed_by"] == admin_user.username
        assert (await receive(page, "decision"))["decision"]["status"] == "approved"
    finally:
        await queue.disconnect()
        await page.disconnect()
