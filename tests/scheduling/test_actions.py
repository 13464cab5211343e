"""Scheduling actions: job states, attempt fencing, decisions as an audit trail, events."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.contrib import admin
from django.db.models import ProtectedError
from django.utils import timezone

from scheduling import actions
from scheduling.events import DECISIONS_GROUP, JOBS_GROUP, job_group
from scheduling.models import (
    Decision,
    DecisionStatus,
    JobStatus,
    ReviewedDecisionError,
    SchedulingJob,
    Solution,
    Workload,
)
from scheduling.tasks import run_scheduling_job
from tests.fleet.helpers import GroupListener
from tests.scheduling.conftest import TWO_TASKS, run_here, submit


def make_stale(job: SchedulingJob) -> None:
    SchedulingJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=1)
    )


class TestWorkloads:
    def test_problem_file_pins_become_tiers_and_runtimes_go(self, operator: Any) -> None:
        problem = {
            "tasks": [
                {"id": "a", "flops": 1e9, "memory_mb": 1, "pinned_to": "cam-0"},
                {"id": "b", "flops": 1e9, "memory_mb": 1, "pinned_to": "edge",
                 "runtime_s": {"cam-0": 3}},
            ],
            "devices": [{"id": "cam-0", "tier": "end"}],
        }  # fmt: skip
        file = io.BytesIO(json.dumps(problem).encode())
        workload = actions.create_workload_from_file(name="f", file=file, created_by=operator)
        assert [t.get("pinned_to") for t in workload.document["tasks"]] == ["end", "edge"]
        assert all("runtime_s" not in t for t in workload.document["tasks"])
        assert workload.document["edges"] == []

    @pytest.mark.parametrize(
        "devices", [[], [{"id": "cam-0"}], [{"id": "cam-0", "tier": "fog"}]], ids=str
    )
    def test_a_pin_to_no_tier_nor_enrolled_device_is_refused(
        self, operator: Any, devices: list[dict[str, Any]]
    ) -> None:
        problem = {
            "tasks": [{"id": "a", "flops": 1e9, "memory_mb": 1, "pinned_to": "cam-0"}],
            "devices": devices,
        }
        file = io.BytesIO(json.dumps(problem).encode())
        with pytest.raises(actions.SchedulingError) as refused:
            actions.create_workload_from_file(name="f", file=file, created_by=operator)
        assert refused.value.field == "file"
        assert "tasks[0].pinned_to: task 'a' is pinned to 'cam-0'" in refused.value.message
        assert not Workload.objects.exists()

    def test_too_many_tasks_refused(self, operator: Any, monkeypatch: Any) -> None:
        monkeypatch.setattr(actions, "MAX_WORKLOAD_TASKS", 1)
        with pytest.raises(actions.SchedulingError) as refused:
            actions.create_workload_from_document(name="w", document=TWO_TASKS, created_by=None)
        assert refused.value.field == "document"
        assert not Workload.objects.exists()


class TestJobStates:
    def test_submit_stores_nothing_on_an_engine_refusal(self, operator: Any, workload: Any) -> None:
        with pytest.raises(actions.SchedulingError) as refused:
            submit(workload, operator)  # no fleet
        assert refused.value.field == "fleet"
        assert not SchedulingJob.objects.exists()

    def test_submit_enqueues_on_commit(
        self,
        job: SchedulingJob,
        operator: Any,
        monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        sent: list[str] = []
        monkeypatch.setattr(run_scheduling_job, "delay", sent.append)
        with django_capture_on_commit_callbacks(execute=True):
            created = submit(job.workload, operator)
        assert sent == [str(created.id)]

    def test_job_whose_task_cannot_be_sent_fails_retryably(
        self,
        job: SchedulingJob,
        operator: Any,
        monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        def broker_down(job_id: str) -> None:
            raise ConnectionError("broker down")

        monkeypatch.setattr(run_scheduling_job, "delay", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            created = submit(job.workload, operator)
        created.refresh_from_db()
        assert created.status == JobStatus.FAILED
        assert created.error == "Could not queue the job: ConnectionError: broker down"
        assert actions.retry_job(created).status == JobStatus.QUEUED

    def test_claim_once(self, job: SchedulingJob) -> None:
        assert actions.start_attempt(job.id) == 1
        assert actions.start_attempt(job.id) is None  # running, heartbeat fresh

    def test_stale_job_is_taken_over_and_the_old_attempt_fenced_off(
        self, job: SchedulingJob
    ) -> None:
        assert actions.start_attempt(job.id) == 1
        make_stale(job)
        assert actions.start_attempt(job.id) == 2
        entry = {"generation": 1, "evaluations": 8, "hypervolume": 0.5, "best": {}}
        assert not actions.record_progress(job.id, 1, [entry], 1)
        assert not actions.record_failure(job.id, 1, "late")
        assert not actions.beat(job.id, 1)
        assert actions.record_progress(job.id, 2, [entry], 1)
        job.refresh_from_db()
        assert (job.status, job.attempts, job.progress) == (JobStatus.RUNNING, 2, entry)

    def test_cancel_rules(self, job: SchedulingJob) -> None:
        actions.start_attempt(job.id)
        assert actions.request_cancel(job).cancel_requested
        assert actions.record_cancelled(job.id, 1)
        with pytest.raises(actions.SchedulingConflict):
            actions.request_cancel(job)

    def test_a_job_whose_worker_stopped_beating_is_cancelled_at_once(
        self, job: SchedulingJob
    ) -> None:
        actions.start_attempt(job.id)
        make_stale(job)
        cancelled = actions.request_cancel(job)
        assert (cancelled.status, cancelled.finished_at is not None) == (JobStatus.CANCELLED, True)
        assert not actions.record_progress(job.id, 1, [{"generation": 1}], 1)  # fenced off

    def test_retry_keeps_the_frozen_problem(self, job: SchedulingJob, fleet: Any) -> None:
        frozen = job.problem
        actions.start_attempt(job.id)
        actions.record_failure(job.id, 1, "boom")
        fleet[0].delete()
        retried = actions.retry_job(job)
        assert (retried.status, retried.error, retried.problem) == (JobStatus.QUEUED, "", frozen)

    def test_non_finite_numbers_are_stored_as_null(self, job: SchedulingJob) -> None:
        actions.start_attempt(job.id)
        entry = {"generation": 1, "hypervolume": float("nan"), "best": {"cost": float("inf")}}
        actions.record_progress(job.id, 1, [entry], 1)
        job.refresh_from_db()
        assert job.progress == {"generation": 1, "hypervolume": None, "best": {"cost": None}}


class TestDecisions:
    def test_reviewed_decision_cannot_be_saved_or_deleted(
        self, knee: Solution, operator: Any, admin_user: Any
    ) -> None:
        decision = actions.propose_decision(solution=knee, proposed_by=operator)
        decision.comment = "edited before review"
        decision.save()  # a proposal may still change
        actions.approve_decision(decision, reviewed_by=admin_user)
        stored = Decision.objects.get(pk=decision.pk)
        stored.review_comment = "rewritten history"
        with pytest.raises(ReviewedDecisionError):
            stored.save()
        with pytest.raises(ReviewedDecisionError):
            stored.delete()
        assert Decision.objects.get(pk=decision.pk).review_comment == ""

    def test_the_people_on_a_decision_cannot_be_deleted_from_it(
        self, knee: Solution, operator: Any, admin_user: Any
    ) -> None:
        decision = actions.propose_decision(solution=knee, proposed_by=operator)
        actions.approve_decision(decision, reviewed_by=admin_user)
        for person in (admin_user, operator):
            with pytest.raises(ProtectedError):
                person.delete()
        stored = Decision.objects.get(pk=decision.pk)
        assert (stored.proposed_by, stored.reviewed_by) == (operator, admin_user)

    def test_only_admins_review(self, knee: Solution, operator: Any) -> None:
        decision = actions.propose_decision(solution=knee, proposed_by=operator)
        with pytest.raises(actions.NotAllowed):
            actions.approve_decision(decision, reviewed_by=operator)
        decision.refresh_from_db()
        assert decision.status == DecisionStatus.PROPOSED

    def test_unfinished_job_cannot_be_proposed(self, job: SchedulingJob, operator: Any) -> None:
        solution = Solution(job=job)
        with pytest.raises(actions.SchedulingConflict):
            actions.propose_decision(solution=solution, proposed_by=operator)

    def test_admin_pages_are_read_only(self, admin_user: Any, rf: Any) -> None:
        request = rf.get("/")
        request.user = admin_user
        for model in (Decision, SchedulingJob, Solution, Workload):
            page = admin.site._registry[model]
            assert not page.has_change_permission(request)
            assert not page.has_add_permission(request)
            assert not page.has_delete_permission(request)


class TestEvents:
    """Actions announce what they committed on the job's, the jobs' and the review groups."""

    def test_job_and_decision_events(
        self,
        job: SchedulingJob,
        operator: Any,
        admin_user: Any,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        layer = get_channel_layer()
        listeners = {
            name: GroupListener(layer, name)
            for name in (job_group(job.id), JOBS_GROUP, DECISIONS_GROUP)
        }
        try:
            with django_capture_on_commit_callbacks(execute=True):
                run_here(job)
            on_job_page = listeners[job_group(job.id)].messages_until(
                lambda m: m["type"] == "job.status" and m["job"]["status"] == "succeeded"
            )
            progress = [m for m in on_job_page if m["type"] == "job.progress"]
            generations = [e["generation"] for m in progress for e in m["entries"]]
            assert generations == [1, 2, 3, 4]
            assert progress[-1]["progress"]["generation"] == 4
            statuses = [m["job"]["status"] for m in on_job_page if m["type"] == "job.status"]
            assert statuses == ["running", "succeeded"]
            listeners[JOBS_GROUP].messages_until(lambda m: m["job"]["status"] == "succeeded")

            knee = Solution.objects.get(job=job, is_knee=True)
            with django_capture_on_commit_callbacks(execute=True):
                decision = actions.propose_decision(solution=knee, proposed_by=operator)
                actions.reject_decision(decision, reviewed_by=admin_user, comment="no")
            seen = listeners[DECISIONS_GROUP].messages_until(
                lambda m: m["decision"]["status"] == "rejected"
            )
            assert [m["decision"]["status"] for m in seen] == ["proposed", "rejected"]
            assert seen[-1]["decision"]["reviewed_by"] == admin_user.username
        finally:
            for listener in listeners.values():
                listener.close()
