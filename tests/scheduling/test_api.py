"""Scheduling API: workloads, uploads, templates, jobs, solutions and decisions.

Every bad input gets a 400 whose body names the field (and, for task graphs, the task's
path in the message), and stores nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from devices.models import Device, DeviceStatus
from scheduling import actions
from scheduling.engine.generate import video_pipeline
from scheduling.models import (
    Decision,
    DecisionStatus,
    JobStatus,
    SchedulingJob,
    Solution,
    SolutionKind,
    Workload,
    WorkloadSource,
)
from tests.api.mixins import CreateMixin, ListMixin, RoleMixin, client_for
from tests.scheduling.conftest import SMALL_RUN, TWO_TASKS, make_device

API = "/api/v1/scheduling"


def graph(*tasks: dict[str, Any], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"tasks": list(tasks), "edges": edges or []}


def task(task_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "flops": 1e9, "memory_mb": 64, **extra}


def edge(src: str, dst: str, size: float = 100) -> dict[str, Any]:
    return {"from": src, "to": dst, "bytes": size}


def document_body(document: Any) -> dict[str, Any]:
    return {"name": "bad", "document": document}


# --- workloads --------------------------------------------------------------------------
class TestWorkloadAPI(RoleMixin, ListMixin, CreateMixin):
    url = f"{API}/workloads/"
    fixture_name = "workload"
    model = Workload
    valid_create = {"name": "cams", "template": "video-pipeline", "parameters": {"cameras": 3}}
    invalid_create = [
        ({"template": "video-pipeline"}, "name"),
        ({"name": "x" * 101, "document": TWO_TASKS}, "name"),
        ({"name": "neither"}, "document"),
        ({"name": "both", "document": TWO_TASKS, "template": "montage"}, "document"),
        ({"name": "t", "document": TWO_TASKS, "parameters": {"cameras": 2}}, "parameters"),
        # The graph: cycles, unknown dependencies, duplicates, sizes.
        (document_body([1, 2]), "document"),
        (document_body({"tasks": []}), "document"),
        (document_body(graph(task("a"), task("b"), edges=[edge("a", "b"), edge("b", "a")])),
         "document"),
        (document_body(graph(task("a"), edges=[edge("a", "ghost")])), "document"),
        (document_body(graph(task("a"), task("a"))), "document"),
        (document_body(graph(task("a", flops=-1))), "document"),
        (document_body(graph({"id": "a", "flops": 1e9})), "document"),
        (document_body(graph(task("a"), task("b"), edges=[edge("a", "b", -5)])), "document"),
        (document_body(graph(task("a\x00"))), "document"),
        # Templates and their parameters.
        ({"name": "t", "template": "nope"}, "template"),
        ({"name": "t", "template": "video-pipeline", "parameters": {"cameras": 0}}, "parameters"),
        ({"name": "t", "template": "video-pipeline", "parameters": {"cameras": 501}},
         "parameters"),
        ({"name": "t", "template": "video-pipeline", "parameters": {"cameras": "many"}},
         "parameters"),
        ({"name": "t", "template": "montage", "parameters": {"cameras": 2}}, "parameters"),
        ({"name": "t", "template": "layered", "parameters": {"tasks": 2.5}}, "parameters"),
    ]  # fmt: skip

    def test_create_from_template_keeps_tier_pins_only(self, operator: Any) -> None:
        body = client_for(operator).post(self.url, self.valid_create, format="json").json()
        assert body["source"] == WorkloadSource.TEMPLATE
        assert body["template"] == "video-pipeline"
        assert body["parameters"] == {"cameras": 3, "seed": 1}
        assert body["task_count"] == 4 * 3 + 2
        pins = {t["pinned_to"] for t in body["document"]["tasks"] if "pinned_to" in t}
        assert pins == {"end"}
        assert set(body["document"]) == {"tasks", "edges"}

    def test_create_from_document(self, operator: Any) -> None:
        response = client_for(operator).post(
            self.url, {"name": "pair", "document": TWO_TASKS}, format="json"
        )
        assert response.status_code == 201, response.json()
        workload = Workload.objects.get(pk=response.json()["id"])
        assert workload.source == WorkloadSource.DOCUMENT
        assert (workload.task_count, workload.edge_count) == (2, 1)
        assert workload.created_by == operator

    @pytest.mark.parametrize(
        ("document", "words"),
        [
            (graph(task("a"), task("b"), edges=[edge("a", "b"), edge("b", "a")]), "cycle"),
            (graph(task("a"), edges=[edge("a", "ghost")]), "edges[0].to: unknown task 'ghost'"),
            (graph(task("a"), task("a")), "tasks[1].id: duplicate task id 'a'"),
            (graph(task("a", flops=-1)), "tasks[0].flops"),
            (graph({"id": "a", "flops": 1e9}), "tasks[0].memory_mb"),
        ],
    )
    def test_graph_errors_name_the_task(self, operator: Any, document: Any, words: str) -> None:
        response = client_for(operator).post(self.url, document_body(document), format="json")
        assert response.status_code == 400
        assert words in response.json()["document"][0]

    def test_bad_parameter_is_named(self, operator: Any) -> None:
        body = {"name": "t", "template": "video-pipeline", "parameters": {"cameras": 0}}
        message = client_for(operator).post(self.url, body, format="json").json()["parameters"]
        assert message == ["cameras must be from 1 to 500, not 0."]

    def test_list_leaves_documents_out_and_filters(self, operator: Any, workload: Any) -> None:
        client = client_for(operator)
        listed = client.get(self.url).json()["results"]
        assert [w["id"] for w in listed] == [str(workload.id)]
        assert "document" not in listed[0]
        assert client.get(self.url, {"source": "upload"}).json()["count"] == 0
        assert client.get(self.url, {"source": "template"}).json()["count"] == 1
        assert client.get(self.url, {"source": "moon"}).status_code == 400

    def test_delete_unused_workload(self, operator: Any, workload: Any) -> None:
        response = client_for(operator).delete(f"{self.url}{workload.id}/")
        assert response.status_code == 204
        assert not Workload.objects.exists()

    def test_delete_refused_while_jobs_use_it(self, operator: Any, job: Any) -> None:
        response = client_for(operator).delete(f"{self.url}{job.workload_id}/")
        assert response.status_code == 409
        assert response.json()["code"] == "conflict"
        assert Workload.objects.filter(pk=job.workload_id).exists()

    def test_templates_listed_with_parameter_bounds(self, operator: Any) -> None:
        response = client_for(operator).get(f"{self.url}templates/")
        assert response.status_code == 200
        templates = {t["name"]: t for t in response.json()}
        assert set(templates) == {"video-pipeline", "montage", "epigenomics", "layered"}
        cameras = templates["video-pipeline"]["parameters"][0]
        assert (cameras["name"], cameras["minimum"], cameras["maximum"]) == ("cameras", 1, 500)


# --- uploads ----------------------------------------------------------------------------
UPLOAD_URL = f"{API}/workloads/upload/"

WFFORMAT: dict[str, Any] = {
    "name": "two-step",
    "schemaVersion": "1.5",
    "workflow": {
        "specification": {
            "tasks": [
                {"name": "split", "id": "split_1", "parents": [], "children": ["join_2"],
                 "inputFiles": [], "outputFiles": ["part.dat"]},
                {"name": "join", "id": "join_2", "parents": ["split_1"], "children": [],
                 "inputFiles": ["part.dat"], "outputFiles": []},
            ],
            "files": [{"id": "part.dat", "sizeInBytes": 5000}],
        },
        "execution": {
            "tasks": [
                {"id": "split_1", "runtimeInSeconds": 2.0},
                {"id": "join_2", "runtimeInSeconds": 1.5},
            ]
        },
    },
}  # fmt: skip


def upload(user: Any, content: bytes, name: str = "upload.json", **fields: Any) -> Any:
    file = SimpleUploadedFile(name, content, content_type="application/json")
    return client_for(user).post(UPLOAD_URL, {"file": file, **fields}, format="multipart")


class TestWorkloadUpload:
    def test_problem_file_keeps_its_graph_and_pins_tiers(self, operator: Any) -> None:
        problem = video_pipeline(2, 5, seed=3)
        response = upload(operator, json.dumps(problem).encode(), name="city.json")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["name"], body["source"]) == ("city", WorkloadSource.UPLOAD)
        assert body["task_count"] == len(problem["tasks"])
        assert {t.get("pinned_to") for t in body["document"]["tasks"]} == {None, "end"}

    def test_wfformat_file(self, operator: Any) -> None:
        response = upload(operator, json.dumps(WFFORMAT).encode(), name="wf.json")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["source"] == WorkloadSource.WFFORMAT
        assert body["document"]["edges"] == [{"from": "split_1", "to": "join_2", "bytes": 5000}]

    @pytest.mark.parametrize(
        ("content", "words"),
        [
            (b"{not json", "Not valid JSON"),
            (b'{"tasks": [{"id": "a", "flops": NaN, "memory_mb": 1}]}', "Not valid JSON"),
            (b"\xff\xfe\x00garbage", "Not valid JSON"),
            (b"[1, 2, 3]", "nor a WfFormat workflow"),
            (b'{"devices": []}', "nor a WfFormat workflow"),
            (json.dumps(graph(task("a", memory_mb=-1))).encode(), "tasks[0].memory_mb"),
            (
                json.dumps(
                    graph(task("a"), task("b"), edges=[edge("a", "b"), edge("b", "a")])
                ).encode(),
                "cycle",
            ),
        ],
    )
    def test_bad_file_named_and_nothing_stored(
        self, operator: Any, content: bytes, words: str
    ) -> None:
        response = upload(operator, content)
        assert response.status_code == 400
        assert words in response.json()["file"][0]
        assert not Workload.objects.exists()

    def test_bad_wfformat_task_is_named(self, operator: Any) -> None:
        broken = json.loads(json.dumps(WFFORMAT))
        broken["workflow"]["execution"]["tasks"][1]["runtimeInSeconds"] = -1
        response = upload(operator, json.dumps(broken).encode())
        assert response.status_code == 400
        assert "join_2" in response.json()["file"][0]
        assert not Workload.objects.exists()

    def test_a_file_larger_than_other_bodies_may_be_uploaded(
        self, operator: Any, settings: Any
    ) -> None:
        settings.TRIAD_MAX_BODY_BYTES = 4096
        padded = json.dumps(WFFORMAT).encode() + b" " * 8192
        response = upload(operator, padded)
        assert response.status_code == 201, response.json()
        document = {"name": "big", "document": {**TWO_TASKS, "padding": " " * 8192}}
        elsewhere = client_for(operator).post(f"{API}/workloads/", document, format="json")
        assert elsewhere.status_code == 413
        assert Workload.objects.count() == 1

    def test_a_body_over_the_upload_limit_is_refused_unread(
        self, operator: Any, settings: Any
    ) -> None:
        settings.TRIAD_MAX_UPLOAD_BYTES = 64 * 1024
        response = upload(operator, b" " * (64 * 1024) + b"{}")
        assert response.status_code == 413
        assert response.json()["code"] == "request_too_large"
        assert not Workload.objects.exists()

    def test_too_big_file_named(self, operator: Any, settings: Any) -> None:
        settings.TRIAD_MAX_UPLOAD_BYTES = 64 * 1024
        content = b" " * actions.max_upload_bytes() + b"{}"
        response = upload(operator, content)
        assert response.status_code == 400
        assert "larger than" in response.json()["file"][0]
        assert not Workload.objects.exists()

    def test_missing_file_named(self, operator: Any) -> None:
        response = client_for(operator).post(UPLOAD_URL, {"name": "x"}, format="multipart")
        assert response.status_code == 400
        assert "file" in response.json()


# --- jobs -------------------------------------------------------------------------------
class TestSchedulingJobAPI(RoleMixin, ListMixin, CreateMixin):
    url = f"{API}/jobs/"
    fixture_name = "job"
    model = SchedulingJob
    valid_create = dict(SMALL_RUN)
    invalid_create = [
        ({"workload": "00000000-0000-0000-0000-000000000000"}, "workload"),
        ({"workload": "not-a-uuid"}, "workload"),
        ({"objectives": []}, "objectives"),
        ({"objectives": ["latency"]}, "objectives"),
        ({"objectives": ["energy", "energy"]}, "objectives"),
        ({"algorithm": "annealing"}, "algorithm"),
        ({"generations": 0}, "generations"),
        ({"generations": 2001}, "generations"),
        ({"population": 7}, "population"),
        ({"population": 1001}, "population"),
        ({"seed": -1}, "seed"),
        ({"algorithm": "nsga3", "objectives": ["makespan"]}, "algorithm"),
    ]

    def create_body(self, body: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        request.getfixturevalue("fleet")
        workload = request.getfixturevalue("workload")
        return {"workload": str(workload.id), **body}

    def test_create_freezes_the_online_fleet(
        self, operator: Any, workload: Any, fleet: list[Device]
    ) -> None:
        Device.objects.filter(pk=fleet[1].pk).update(status=DeviceStatus.OFFLINE)
        body = {"workload": str(workload.id), **SMALL_RUN}
        response = client_for(operator).post(self.url, body, format="json")
        assert response.status_code == 201, response.json()
        created = response.json()
        assert created["status"] == JobStatus.QUEUED
        assert created["fleet_size"] == 3
        assert {d["name"] for d in created["devices"]} == {"cloud-0", "cam-0", "cam-1"}
        job = SchedulingJob.objects.get(pk=created["id"])
        assert job.problem["objectives"] == ["makespan", "energy"]
        assert len(job.problem["tasks"]) == workload.task_count
        assert job.created_by == operator

    def test_defaults(self, operator: Any, workload: Any, fleet: Any) -> None:
        body = client_for(operator).post(self.url, {"workload": str(workload.id)}).json()
        assert (body["algorithm"], body["generations"], body["population"], body["seed"]) == (
            "nsga2",
            100,
            100,
            1,
        )
        assert body["objectives"] == ["makespan", "energy"]

    def submit_graph(self, user: Any, document: dict[str, Any]) -> Any:
        workload = actions.create_workload_from_document(
            name="g", document=document, created_by=user
        )
        body = {"workload": str(workload.id), **SMALL_RUN}
        return client_for(user).post(self.url, body, format="json")

    def test_pin_to_a_device_not_online_names_the_task(self, operator: Any, fleet: Any) -> None:
        resting = str(fleet[1].id)
        Device.objects.filter(pk=resting).update(status=DeviceStatus.OFFLINE)
        response = self.submit_graph(operator, graph(task("a"), task("b", pinned_to=resting)))
        assert response.status_code == 400
        assert "tasks[1].pinned_to" in response.json()["workload"][0]
        assert resting in response.json()["workload"][0]
        assert not SchedulingJob.objects.exists()

    def test_pin_to_an_unknown_device_is_refused_with_the_workload(
        self, operator: Any, fleet: Any
    ) -> None:
        document = graph(task("a"), task("b", pinned_to="cam-9"))
        response = client_for(operator).post(
            f"{API}/workloads/", {"name": "g", "document": document}, format="json"
        )
        assert response.status_code == 400
        message = response.json()["document"][0]
        assert "tasks[1].pinned_to" in message and "'cam-9'" in message
        assert not Workload.objects.exists()

    def test_pin_to_a_live_device_is_accepted(self, operator: Any, fleet: Any) -> None:
        response = self.submit_graph(operator, graph(task("a", pinned_to=str(fleet[1].id))))
        assert response.status_code == 201, response.json()

    def test_task_no_device_can_hold_names_the_task(self, operator: Any, fleet: Any) -> None:
        response = self.submit_graph(operator, graph(task("a"), task("huge", memory_mb=10**7)))
        assert response.status_code == 400
        message = response.json()["workload"][0]
        assert "tasks[1].memory_mb" in message and "'huge'" in message
        assert not SchedulingJob.objects.exists()

    def test_empty_fleet_is_refused(self, operator: Any, workload: Any) -> None:
        body = {"workload": str(workload.id), **SMALL_RUN}
        response = client_for(operator).post(self.url, body, format="json")
        assert response.status_code == 400
        assert "fleet is empty" in response.json()["fleet"][0]
        assert not SchedulingJob.objects.exists()

    def test_offline_devices_are_not_the_fleet(self, operator: Any, workload: Any) -> None:
        make_device("cloud-0", status=DeviceStatus.OFFLINE)
        body = {"workload": str(workload.id), **SMALL_RUN}
        response = client_for(operator).post(self.url, body, format="json")
        assert response.status_code == 400 and "fleet" in response.json()

    def test_detail_shows_history_and_summary(self, operator: Any, succeeded_job: Any) -> None:
        body = client_for(operator).get(f"{self.url}{succeeded_job.id}/").json()
        assert body["status"] == JobStatus.SUCCEEDED
        assert [h["generation"] for h in body["history"]] == list(range(1, 5))
        assert body["progress"] == body["history"][-1]
        assert body["hypervolume"]["front"] > 0
        assert body["lower_bounds"]["makespan"] > 0
        assert body["workload_name"] == "2 cameras"

    def test_list_is_compact_and_filters(self, operator: Any, succeeded_job: Any) -> None:
        client = client_for(operator)
        listed = client.get(self.url).json()["results"]
        assert "history" not in listed[0] and "devices" not in listed[0]
        assert client.get(self.url, {"status": "succeeded"}).json()["count"] == 1
        assert client.get(self.url, {"status": "queued"}).json()["count"] == 0
        assert client.get(self.url, {"status": "moon"}).status_code == 400

    def test_solutions_and_one_in_full(self, operator: Any, succeeded_job: Any) -> None:
        client = client_for(operator)
        url = f"{self.url}{succeeded_job.id}/solutions/"
        solutions = client.get(url).json()
        kinds = {s["kind"] for s in solutions}
        assert kinds == {"front", "baseline"}
        assert "timeline" not in solutions[0]
        front = client.get(url, {"kind": "front"}).json()
        assert [s["index"] for s in front] == list(range(len(front)))
        assert sum(s["is_knee"] for s in front) == 1
        baselines = {s["name"] for s in client.get(url, {"kind": "baseline"}).json()}
        assert "heft" in baselines
        full = client.get(f"{API}/solutions/{front[0]['id']}/").json()
        assert set(full["assignment"]) == {t["id"] for t in succeeded_job.problem["tasks"]}
        assert len(full["timeline"]) == len(full["assignment"])
        assert client.get(url, {"kind": "moon"}).status_code == 400

    def test_problem_document(self, operator: Any, job: Any) -> None:
        body = client_for(operator).get(f"{self.url}{job.id}/problem/").json()
        assert body == job.problem


class TestJobCancelAndRetry:
    def post(self, user: Any, job: SchedulingJob, verb: str) -> Any:
        return client_for(user).post(f"{API}/jobs/{job.id}/{verb}/")

    def test_cancel_queued_job_at_once(self, operator: Any, job: SchedulingJob) -> None:
        response = self.post(operator, job, "cancel")
        assert response.status_code == 200
        assert response.json()["status"] == JobStatus.CANCELLED
        assert response.json()["finished_at"] is not None

    def test_cancel_running_job_asks_it_to_stop(self, operator: Any, job: SchedulingJob) -> None:
        actions.start_attempt(job.id)
        body = self.post(operator, job, "cancel").json()
        assert (body["status"], body["cancel_requested"]) == (JobStatus.RUNNING, True)

    def test_cancel_finished_job_conflicts(self, operator: Any, succeeded_job: Any) -> None:
        response = self.post(operator, succeeded_job, "cancel")
        assert response.status_code == 409
        assert response.json()["code"] == "conflict"
        succeeded_job.refresh_from_db()
        assert succeeded_job.status == JobStatus.SUCCEEDED

    @pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
    def test_retry_failed_or_cancelled(self, operator: Any, job: Any, status: str) -> None:
        SchedulingJob.objects.filter(pk=job.pk).update(status=status, error="boom", attempts=1)
        body = self.post(operator, job, "retry").json()
        assert (body["status"], body["error"], body["attempts"]) == (JobStatus.QUEUED, "", 1)

    def test_retry_stale_running_job(self, operator: Any, job: SchedulingJob) -> None:
        actions.start_attempt(job.id)
        SchedulingJob.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now() - timedelta(minutes=5)
        )
        assert self.post(operator, job, "retry").json()["status"] == JobStatus.QUEUED

    def test_retry_refused_for_live_queued_or_succeeded_jobs(
        self, operator: Any, job: SchedulingJob
    ) -> None:
        assert self.post(operator, job, "retry").status_code == 409
        actions.start_attempt(job.id)
        assert self.post(operator, job, "retry").status_code == 409
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING and job.attempts == 1


# --- decisions --------------------------------------------------------------------------
class TestDecisionAPI(RoleMixin, ListMixin, CreateMixin):
    url = f"{API}/decisions/"
    fixture_name = "proposal"
    model = Decision
    valid_create = {"comment": "fastest that fits the energy budget"}
    invalid_create = [
        ({"solution": None}, "solution"),
        ({"solution": "00000000-0000-0000-0000-000000000000"}, "solution"),
        ({"comment": "x" * 2001}, "comment"),
    ]

    def create_body(self, body: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        knee = request.getfixturevalue("knee")
        return {"solution": str(knee.id), **body}

    @pytest.fixture
    def proposal(self, knee: Solution, operator: Any) -> Decision:
        return actions.propose_decision(solution=knee, proposed_by=operator, comment="knee")

    def review(self, user: Any, decision: Decision, verb: str, comment: str = "") -> Any:
        body = {"comment": comment} if comment else {}
        return client_for(user).post(f"{self.url}{decision.id}/{verb}/", body, format="json")

    def test_propose(self, operator: Any, knee: Solution) -> None:
        body = client_for(operator).post(self.url, {"solution": str(knee.id)}).json()
        assert body["status"] == DecisionStatus.PROPOSED
        assert body["job"] == str(knee.job_id)
        assert body["proposed_by"] == operator.username
        assert body["solution_summary"]["is_knee"] is True

    @pytest.mark.parametrize("verb", ["approve", "reject"])
    def test_operators_cannot_review(self, operator: Any, proposal: Decision, verb: str) -> None:
        response = self.review(operator, proposal, verb, comment="no")
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        proposal.refresh_from_db()
        assert proposal.status == DecisionStatus.PROPOSED and proposal.reviewed_by is None

    def test_admin_approves(self, admin_user: Any, proposal: Decision) -> None:
        body = self.review(admin_user, proposal, "approve", comment="go").json()
        assert body["status"] == DecisionStatus.APPROVED
        assert (body["reviewed_by"], body["review_comment"]) == (admin_user.username, "go")
        assert body["reviewed_at"] is not None

    def test_reject_needs_a_comment(self, admin_user: Any, proposal: Decision) -> None:
        response = self.review(admin_user, proposal, "reject")
        assert response.status_code == 400 and "comment" in response.json()
        response = self.review(admin_user, proposal, "reject", comment="   ")
        assert response.status_code == 400 and "comment" in response.json()
        proposal.refresh_from_db()
        assert proposal.status == DecisionStatus.PROPOSED
        body = self.review(admin_user, proposal, "reject", comment="too costly").json()
        assert (body["status"], body["review_comment"]) == ("rejected", "too costly")

    def test_reviewed_decision_is_final(self, admin_user: Any, proposal: Decision) -> None:
        self.review(admin_user, proposal, "approve")
        for verb in ("approve", "reject"):
            response = self.review(admin_user, proposal, verb, comment="changed my mind")
            assert response.status_code == 409
        proposal.refresh_from_db()
        assert proposal.status == DecisionStatus.APPROVED and proposal.review_comment == ""

    def test_one_approved_decision_per_job(
        self, admin_user: Any, operator: Any, proposal: Decision, succeeded_job: Any
    ) -> None:
        other = Solution.objects.filter(job=succeeded_job, kind=SolutionKind.BASELINE).first()
        assert other is not None
        second = actions.propose_decision(solution=other, proposed_by=operator)
        assert self.review(admin_user, proposal, "approve").status_code == 200
        assert self.review(admin_user, second, "approve").status_code == 409
        # ...and no more proposals for a job that has its decision.
        response = client_for(operator).post(self.url, {"solution": str(other.id)})
        assert response.status_code == 409
        assert Decision.objects.filter(status=DecisionStatus.APPROVED).count() == 1
        assert Decision.objects.count() == 2

    def test_filter_review_queue(self, admin_user: Any, proposal: Decision) -> None:
        client = client_for(admin_user)
        assert client.get(self.url, {"status": "proposed"}).json()["count"] == 1
        assert client.get(self.url, {"job": str(proposal.job_id)}).json()["count"] == 1
        self.review(admin_user, proposal, "reject", comment="no")
        assert client.get(self.url, {"status": "proposed"}).json()["count"] == 0
        assert client.get(self.url, {"status": "rejected"}).json()["count"] == 1

    def test_infeasible_solution_cannot_be_proposed(self, operator: Any, knee: Solution) -> None:
        Solution.objects.filter(pk=knee.pk).update(feasible=False)
        response = client_for(operator).post(self.url, {"solution": str(knee.id)})
        assert response.status_code == 400 and "solution" in response.json()
        assert not Decision.objects.exists()


def test_schema_documents_the_scheduling_api(operator_client: Any) -> None:
    schema = operator_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = schema.json()["paths"]
    expected = {
        f"{API}/workloads/",
        f"{API}/workloads/{{id}}/",
        f"{API}/workloads/upload/",
        f"{API}/workloads/templates/",
        f"{API}/jobs/",
        f"{API}/jobs/{{id}}/",
        f"{API}/jobs/{{id}}/cancel/",
        f"{API}/jobs/{{id}}/retry/",
        f"{API}/jobs/{{id}}/solutions/",
        f"{API}/jobs/{{id}}/problem/",
        f"{API}/solutions/{{id}}/",
        f"{API}/decisions/",
        f"{API}/decisions/{{id}}/",
        f"{API}/decisions/{{id}}/approve/",
        f"{API}/decisions/{{id}}/reject/",
    }
    assert expected <= set(paths)
    assert {path for path in paths if path.startswith(API)} == expected
    assert paths[f"{API}/jobs/"]["post"]["tags"] == ["scheduling"]
