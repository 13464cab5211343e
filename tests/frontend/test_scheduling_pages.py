"""Scheduling pages with the Django test client: roles, what each page shows, and every
form's good and bad input (a bad one shows the error next to its field and stores nothing)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from html import unescape
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from devices.models import Device, DeviceStatus
from frontend.scheduling_queries import task_kind
from scheduling import actions
from scheduling.models import (
    Decision,
    DecisionStatus,
    JobStatus,
    SchedulingJob,
    Solution,
    SolutionKind,
    Workload,
)
from scheduling.tasks import run_scheduling_job
from tests.conftest import ROOT
from tests.frontend.pages import PageRoleTests, logged_in
from tests.frontend.scheduling_helpers import SMALL_RUN, make_fleet

JOB_FORM = {"objectives": ["makespan", "energy"], **SMALL_RUN}


def field_errors(html: str, name: str) -> list[str]:
    """The errors shown next to form field `name` (frontend/_field.html marks them); the
    upload form's fields are `upload_<name>`, the others' `id_<name>`."""
    field_id = name if name.startswith("upload_") else f"id_{name}"
    found = re.findall(rf'<p class="field-error" id="{field_id}-error">(.*?)</p>', html, re.S)
    return [unescape(error) for error in found]


@pytest.fixture
def fleet(db: Any) -> list[Device]:
    return make_fleet()


@pytest.fixture
def workload(operator: Any) -> Workload:
    return actions.create_workload_from_template(
        name="two cameras",
        template="video-pipeline",
        parameters={"cameras": 2},
        created_by=operator,
    )


@pytest.fixture
def job(workload: Workload, fleet: list[Device], operator: Any) -> SchedulingJob:
    """A queued job (its task is never sent: the test's transaction never commits)."""
    return actions.submit_job(
        workload=workload,
        created_by=operator,
        objectives=["makespan", "energy", "cost"],
        **SMALL_RUN,
    )


@pytest.fixture
def succeeded_job(job: SchedulingJob) -> SchedulingJob:
    run_scheduling_job(str(job.id))  # in this process, as a worker would
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


@pytest.fixture
def knee(succeeded_job: SchedulingJob) -> Solution:
    return Solution.objects.get(job=succeeded_job, kind=SolutionKind.FRONT, is_knee=True)


@pytest.fixture
def proposal(knee: Solution, operator: Any) -> Decision:
    return actions.propose_decision(solution=knee, proposed_by=operator, comment="balanced")


@pytest.fixture
def urls(succeeded_job: SchedulingJob) -> dict[str, str]:
    return {
        "workloads": "/scheduling/workloads/",
        "workload": f"/scheduling/workloads/{succeeded_job.workload_id}/",
        "jobs": "/scheduling/jobs/",
        "job": f"/scheduling/jobs/{succeeded_job.id}/",
        "decisions": "/scheduling/decisions/",
    }


PAGES = ["workloads", "workload", "jobs", "job", "decisions"]


# --- roles -------------------------------------------------------------------------------
class TestSchedulingPageRoles(PageRoleTests):
    pages = PAGES


@pytest.mark.parametrize("page", PAGES)
def test_operators_see_every_page_with_the_nav(
    operator: Any, urls: dict[str, str], page: str
) -> None:
    response = logged_in(operator).get(urls[page])
    assert response.status_code == 200
    body = response.content.decode()
    for link in ("/scheduling/workloads/", "/scheduling/jobs/", "/scheduling/decisions/"):
        assert f'href="{link}"' in body
    assert 'aria-current="page"' in body


def test_role_less_users_cannot_write(
    nobody: Any, succeeded_job: SchedulingJob, knee: Solution
) -> None:
    client = logged_in(nobody)
    posts = [
        ("/scheduling/workloads/", {"form": "template", "name": "x", "template": "layered"}),
        (f"/scheduling/workloads/{succeeded_job.workload_id}/", JOB_FORM),
        (f"/scheduling/jobs/{succeeded_job.id}/retry/", {}),
        (f"/scheduling/solutions/{knee.id}/propose/", {"comment": "x"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert client.get(f"/scheduling/solutions/{knee.id}.json").status_code == 403
    assert Workload.objects.count() == 1 and SchedulingJob.objects.count() == 1
    assert not Decision.objects.exists()


# --- workloads ---------------------------------------------------------------------------
def test_workload_from_a_template(operator: Any) -> None:
    client = logged_in(operator)
    page = client.get("/scheduling/workloads/").content.decode()
    assert "City video analytics" in page and 'data-templates="video-pipeline"' in page
    assert "No workloads yet" in page

    response = client.post(
        "/scheduling/workloads/",
        {"form": "template", "name": "junction 4", "template": "video-pipeline", "cameras": "2"},
    )
    workload = Workload.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/scheduling/workloads/{workload.id}/"
    assert workload.name == "junction 4" and workload.task_count == 4 * 2 + 2
    assert workload.template == "video-pipeline" and workload.parameters["cameras"] == 2
    assert workload.created_by == operator
    follow = client.get(response["Location"]).content.decode()
    assert "stored: 10 tasks" in follow

    listing = client.get("/scheduling/workloads/").content.decode()
    assert f'href="/scheduling/workloads/{workload.id}/"' in listing and "junction 4" in listing


def test_template_parameters_default_and_ignore_other_templates(operator: Any) -> None:
    response = logged_in(operator).post(
        "/scheduling/workloads/",
        # `cameras` belongs to the video pipeline, not to montage: ignored.
        {
            "form": "template",
            "name": "mosaic",
            "template": "montage",
            "tasks": "20",
            "cameras": "0",
        },
    )
    assert response.status_code == 302
    workload = Workload.objects.get()
    assert workload.template == "montage" and "cameras" not in workload.parameters


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"cameras": "0"}, "cameras", "cameras must be from 1 to 500, not 0"),
        ({"cameras": "two"}, "cameras", "Enter a whole number."),
        ({"seed": "-1"}, "seed", "seed must be from 0"),
        ({"template": "cubism"}, "template", "Select a valid choice."),
        ({"name": ""}, "name", "This field is required."),
        ({"name": "x" * 101}, "name", "at most 100 characters"),
    ],
)
def test_bad_template_input_names_the_field_and_stores_nothing(
    operator: Any, data: dict[str, str], field: str, message: str
) -> None:
    form = {"form": "template", "name": "bad", "template": "video-pipeline", "cameras": "2", **data}
    response = logged_in(operator).post("/scheduling/workloads/", form)
    assert response.status_code == 400
    html = response.content.decode()
    assert any(message in error for error in field_errors(html, field)), field_errors(html, field)
    assert "No workload was stored." in html
    assert not Workload.objects.exists()


def upload(name: str, content: bytes | str) -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="application/json")


def test_upload_a_problem_document_and_a_wfformat_workflow(operator: Any) -> None:
    client = logged_in(operator)
    problem = {
        "tasks": [
            {"id": "grab", "flops": 1e9, "memory_mb": 64, "pinned_to": "cam"},
            {"id": "infer", "flops": 4e10, "memory_mb": 2048},
        ],
        "edges": [{"from": "grab", "to": "infer", "bytes": 1e6}],
        "devices": [
            {"id": "cam", "tier": "end", "gflops": 10, "memory_mb": 1024,
             "power_idle_w": 1, "power_busy_w": 3},
        ],
    }  # fmt: skip
    response = client.post(
        "/scheduling/workloads/",
        {"form": "upload", "name": "", "file": upload("doorbell.json", json.dumps(problem))},
    )
    assert response.status_code == 302, response.content.decode()
    stored = Workload.objects.get(name="doorbell")
    assert stored.source == "upload" and stored.task_count == 2
    # A pin to the file's own device becomes a pin to its tier: jobs run on the live fleet.
    assert stored.document["tasks"][0]["pinned_to"] == "end"

    wfformat = (ROOT / "tests/engine/data/seismology-1.3.json").read_bytes()
    response = client.post(
        "/scheduling/workloads/",
        {"form": "upload", "name": "seismology", "file": upload("s.json", wfformat)},
    )
    assert response.status_code == 302, response.content.decode()
    assert Workload.objects.get(name="seismology").source == "wfformat"


CYCLE = {
    "tasks": [{"id": "a", "flops": 1, "memory_mb": 1}, {"id": "b", "flops": 1, "memory_mb": 1}],
    "edges": [{"from": "a", "to": "b", "bytes": 0}, {"from": "b", "to": "a", "bytes": 0}],
}
UNKNOWN_DEPENDENCY = {
    "tasks": [{"id": "detect-0", "flops": 1, "memory_mb": 1}],
    "edges": [{"from": "decode-9", "to": "detect-0", "bytes": 0}],
}
DUPLICATE = {"tasks": [{"id": "t", "flops": 1, "memory_mb": 1}] * 2, "edges": []}
NEGATIVE = {"tasks": [{"id": "detect-0", "flops": -5, "memory_mb": 1}], "edges": []}


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (json.dumps(CYCLE), ["cycle", "a -> b -> a"]),
        (json.dumps(UNKNOWN_DEPENDENCY), ["decode-9"]),
        (json.dumps(DUPLICATE), ["duplicate", "'t'"]),
        (json.dumps(NEGATIVE), ["flops", "detect-0"]),
        ("{not json", ["Not valid JSON"]),
        (json.dumps({"hello": 1}), ["no tasks"]),
    ],
    ids=["cycle", "unknown-dependency", "duplicate-id", "negative-size", "not-json", "no-graph"],
)
def test_bad_uploads_name_the_task_next_to_the_file_field(
    operator: Any, content: str, needles: list[str]
) -> None:
    response = logged_in(operator).post(
        "/scheduling/workloads/",
        {"form": "upload", "name": "bad", "file": upload("bad.json", content)},
    )
    assert response.status_code == 400
    errors = " ".join(field_errors(response.content.decode(), "upload_file"))
    for needle in needles:
        assert needle in errors, errors
    assert not Workload.objects.exists()


def test_upload_without_a_file(operator: Any) -> None:
    response = logged_in(operator).post("/scheduling/workloads/", {"form": "upload", "name": "x"})
    assert response.status_code == 400
    assert field_errors(response.content.decode(), "upload_file") == [
        "File: This field is required."
    ]
    assert not Workload.objects.exists()


# --- workload page and job submission ----------------------------------------------------
def test_workload_page_summarises_the_graph(operator: Any, workload: Workload) -> None:
    response = logged_in(operator).get(f"/scheduling/workloads/{workload.id}/")
    summary = response.context["summary"]
    # decode -> detect -> track -> reid per camera, then aggregate -> alert.
    assert (summary.tasks, summary.edges, summary.levels, summary.widest_level) == (10, 9, 6, 2)
    assert (summary.sources, summary.sinks, summary.pinned) == (2, 1, 2)
    kinds = {kind.name: kind.count for kind in summary.kinds}
    assert kinds == {"decode": 2, "detect": 2, "track": 2, "reid": 2, "aggregate": 1, "alert": 1}
    html = response.content.decode()
    assert "<code>detect-1</code>" in html and 'id="job-form"' in html
    assert 'value="makespan" id="id_objectives_0" checked' in html
    assert 'value="cost" id="id_objectives_2">' in html


KINDS = {
    "decode-0": "decode",
    "reid-19": "reid",
    "detect-12": "detect",
    "filterContams-0-2": "filterContams",
    "mProject_003": "mProject",
    "map.2.1": "map",
    "T10": "T",
    "aggregate": "aggregate",
    "alert": "alert",
    "fastqSplit_chr21_00000001": "fastqSplit_chr",
    "a--1": "a-",
    "step1-": "step1-",
    "123": "123",
    "-12": "-12",
}


@pytest.mark.parametrize(("task_id", "kind"), KINDS.items())
def test_task_kind_takes_the_numbering_off_the_end(task_id: str, kind: str) -> None:
    assert task_kind(task_id) == kind


def test_task_kind_is_linear_on_long_numberings() -> None:
    # The former regex, (?:[-_.]?\d+)+$, backtracked exponentially here: a hang would run
    # into the test timeout.
    assert task_kind("1" * 10_000 + "a") == "1" * 10_000 + "a"
    assert task_kind("x" + "1" * 10_000 + "a") == "x" + "1" * 10_000 + "a"
    assert task_kind("x" + "-1" * 10_000) == "x"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_gantt_chart_colours_by_the_same_kinds() -> None:
    source = (ROOT / "frontend/static/frontend/scheduling/front.js").read_text()
    function = re.search(r"^  function taskKind\(id\) \{$.*?^  \}$", source, re.S | re.M)
    assert function
    ids = [*KINDS, "1" * 10_000 + "a"]
    script = f"{function.group()}\nconsole.log(JSON.stringify({json.dumps(ids)}.map(taskKind)));"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [task_kind(task_id) for task_id in ids]


def test_submit_a_job_from_the_workload_page(
    operator: Any, workload: Workload, fleet: list[Device]
) -> None:
    client = logged_in(operator)
    response = client.post(
        f"/scheduling/workloads/{workload.id}/",
        {**JOB_FORM, "objectives": ["energy", "makespan"]},
    )
    job = SchedulingJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/scheduling/jobs/{job.id}/"
    assert job.status == JobStatus.QUEUED and job.created_by == operator
    assert job.objectives == ["makespan", "energy"]  # in the stored order
    assert (job.generations, job.population, job.fleet_size) == (4, 8, len(fleet))
    page = client.get(response["Location"]).content.decode()
    assert "Job queued on a fleet of 4 online devices." in page
    assert "pill-job-queued" in page and 'id="cancel-job"' in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"objectives": []}, "objectives", "This field is required."),
        ({"objectives": ["speed"]}, "objectives", "Select a valid choice."),
        ({"generations": "0"}, "generations", "greater than or equal to 1"),
        ({"population": "3"}, "population", "greater than or equal to 8"),
        ({"algorithm": "simplex"}, "algorithm", "Select a valid choice."),
        ({"seed": "x"}, "seed", "Enter a whole number."),
    ],
)
def test_bad_job_input_names_the_field_and_submits_nothing(
    operator: Any, workload: Workload, fleet: list[Device], data: dict[str, Any], field: str,
    message: str,
) -> None:  # fmt: skip
    response = logged_in(operator).post(
        f"/scheduling/workloads/{workload.id}/", {**JOB_FORM, **data}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert any(message in error for error in field_errors(html, field)), field_errors(html, field)
    assert "No job was submitted." in html
    assert not SchedulingJob.objects.exists()


def test_an_empty_fleet_is_a_form_error(operator: Any, workload: Workload) -> None:
    Device.objects.create(name="asleep", tier="edge", status=DeviceStatus.OFFLINE, cpu_cores=1,
                          gflops=10, memory_mb=1024, power_idle_w=1, power_busy_w=2)  # fmt: skip
    response = logged_in(operator).post(f"/scheduling/workloads/{workload.id}/", JOB_FORM)
    assert response.status_code == 400
    alert = re.search(r'<div class="alert alert-error".*?</div>', response.content.decode(), re.S)
    assert alert and "No job was submitted." in alert.group(0) and "devices" in alert.group(0)
    assert not SchedulingJob.objects.exists()


def test_an_infeasible_instance_names_the_task(operator: Any, fleet: list[Device]) -> None:
    huge = actions.create_workload_from_document(
        name="huge",
        document={"tasks": [{"id": "giant-model", "flops": 1e9, "memory_mb": 10**7}], "edges": []},
        created_by=operator,
    )
    response = logged_in(operator).post(f"/scheduling/workloads/{huge.id}/", JOB_FORM)
    assert response.status_code == 400
    assert "giant-model" in response.content.decode()
    assert not SchedulingJob.objects.exists()


# --- jobs --------------------------------------------------------------------------------
def test_jobs_list(operator: Any, succeeded_job: SchedulingJob) -> None:
    html = logged_in(operator).get("/scheduling/jobs/").content.decode()
    row = re.search(rf'<tr data-job-id="{succeeded_job.id}".*?</tr>', html, re.S)
    assert row, html
    assert "pill-job-succeeded" in row.group(0) and "two cameras" in row.group(0)
    assert "makespan" in row.group(0) and "4 \N{MULTIPLICATION SIGN} 8" in row.group(0)
    hypervolume = (succeeded_job.hypervolume or {})["front"]
    assert f"{hypervolume:.4g}" in row.group(0)
    assert 'data-live-path="/ws/scheduling/jobs/"' in html


def job_data(html: str, element_id: str) -> Any:
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S
    )
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


def test_queued_job_page(operator: Any, job: SchedulingJob, fleet: list[Device]) -> None:
    html = logged_in(operator).get(f"/scheduling/jobs/{job.id}/").content.decode()
    data = job_data(html, "job-data")
    assert data["status"] == "queued" and data["history"] == []
    assert data["objectives"] == ["makespan", "energy", "cost"]
    assert data["devices"][str(fleet[0].id)] == {"name": "cloud-a", "tier": "cloud"}
    assert 'id="result">' in html and "result-data" not in html
    assert 'id="cancel-job"' in html and 'id="retry-job"' not in html
    assert re.search(r'data-plotly-src="/static-vendor/plotly\.min\.js\?v=[\d.]+"', html)


def test_succeeded_job_page_shows_front_baselines_bounds_and_the_knee(
    operator: Any, succeeded_job: SchedulingJob, knee: Solution
) -> None:
    html = logged_in(operator).get(f"/scheduling/jobs/{succeeded_job.id}/").content.decode()
    front = Solution.objects.filter(job=succeeded_job, kind=SolutionKind.FRONT)
    result = job_data(html, "result-data")
    assert [s["id"] for s in result["front"]] == [str(s.id) for s in front]
    assert {b["name"] for b in result["baselines"]} >= {"heft", "all_cloud", "random"}
    assert set(result["lower_bounds"]) == {"makespan", "energy", "cost"}
    assert len(job_data(html, "job-data")["history"]) == 4
    selected = job_data(html, "solution-data")
    assert selected["id"] == str(knee.id) and selected["is_knee"]
    assert len(selected["timeline"]) == 10
    assert f'action="/scheduling/solutions/{knee.id}/propose/"' in html
    for text in ("Pareto front", "HEFT", "All on cloud", "Lower bounds", "Best / bound", "knee"):
        assert text in html, text
    assert html.count("data-solution-id=") == Solution.objects.filter(job=succeeded_job).count()
    assert 'id="cancel-job"' not in html and 'id="retry-job"' not in html
    assert "No solution of this job has been proposed yet." in html


def test_the_page_opens_on_the_solution_asked_for(
    operator: Any, succeeded_job: SchedulingJob
) -> None:
    heft = Solution.objects.get(job=succeeded_job, kind=SolutionKind.BASELINE, name="heft")
    client = logged_in(operator)
    html = client.get(f"/scheduling/jobs/{succeeded_job.id}/?solution={heft.id}").content.decode()
    assert job_data(html, "solution-data")["id"] == str(heft.id)
    assert "Baseline HEFT" in html
    # Garbage or another job's solution: the knee.
    for junk in ("nonsense", str(uuid.uuid4())):
        html = client.get(f"/scheduling/jobs/{succeeded_job.id}/?solution={junk}").content.decode()
        assert job_data(html, "solution-data")["is_knee"]


def test_solution_data_has_its_timeline(operator: Any, knee: Solution) -> None:
    response = logged_in(operator).get(f"/scheduling/solutions/{knee.id}.json")
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == str(knee.id) and data["label"].endswith("(knee)")
    assert {entry["task"] for entry in data["timeline"]} == set(knee.assignment)
    assert logged_in(operator).get(f"/scheduling/solutions/{uuid.uuid4()}.json").status_code == 404


def test_cancel_and_retry(operator: Any, job: SchedulingJob) -> None:
    client = logged_in(operator)
    response = client.post(f"/scheduling/jobs/{job.id}/cancel/", follow=True)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    html = response.content.decode()
    assert "The job is cancelled." in html and 'id="retry-job"' in html
    # Nothing left to cancel: refused with a message, nothing changes.
    response = client.post(f"/scheduling/jobs/{job.id}/cancel/", follow=True)
    assert "there is nothing to cancel" in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED

    response = client.post(f"/scheduling/jobs/{job.id}/retry/", follow=True)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert "queued again" in response.content.decode()
    response = client.post(f"/scheduling/jobs/{job.id}/retry/", follow=True)
    assert "Only failed, cancelled or stalled jobs can be retried" in response.content.decode()
    assert client.get(f"/scheduling/jobs/{job.id}/cancel/").status_code == 405


def test_propose_a_solution(operator: Any, succeeded_job: SchedulingJob, knee: Solution) -> None:
    client = logged_in(operator)
    response = client.post(f"/scheduling/solutions/{knee.id}/propose/", {"comment": "balanced"})
    decision = Decision.objects.get()
    assert response.status_code == 302
    assert (
        response["Location"] == f"/scheduling/jobs/{succeeded_job.id}/?solution={knee.id}#decisions"
    )
    assert (decision.solution, decision.status, decision.comment) == (knee, "proposed", "balanced")
    assert decision.proposed_by == operator
    html = client.get(response["Location"]).content.decode()
    history = re.search(r'<section class="card" id="decisions">.*?</section>', html, re.S)
    assert history and "pill-decision-proposed" in history.group(0)
    assert "balanced" in history.group(0) and ">op<" in history.group(0)


def test_bad_proposals_show_the_error_and_store_nothing(
    operator: Any, admin_user: Any, succeeded_job: SchedulingJob, knee: Solution
) -> None:
    client = logged_in(operator)
    response = client.post(f"/scheduling/solutions/{knee.id}/propose/", {"comment": "x" * 2001})
    assert response.status_code == 400
    errors = field_errors(response.content.decode(), "comment")
    assert errors and "at most 2000 characters" in errors[0]
    assert not Decision.objects.exists()

    decision = actions.propose_decision(solution=knee, proposed_by=operator)
    actions.approve_decision(decision, reviewed_by=admin_user)
    other = Solution.objects.filter(job=succeeded_job).exclude(pk=knee.pk).first()
    assert other is not None
    response = client.post(f"/scheduling/solutions/{other.id}/propose/", {"comment": ""})
    assert response.status_code == 400
    assert "already has an approved decision" in response.content.decode()
    assert Decision.objects.count() == 1


def test_a_job_with_an_approved_decision_takes_no_more_proposals(
    operator: Any, proposal: Decision, admin_user: Any
) -> None:
    actions.approve_decision(proposal, reviewed_by=admin_user, comment="go")
    html = logged_in(operator).get(f"/scheduling/jobs/{proposal.job_id}/").content.decode()
    assert 'id="propose-form"' not in html and 'id="propose-closed"' in html
    assert "pill-decision-approved" in html and "go" in html


# --- review queue ------------------------------------------------------------------------
def test_operators_see_the_queue_but_cannot_review(operator: Any, proposal: Decision) -> None:
    client = logged_in(operator)
    html = client.get("/scheduling/decisions/").content.decode()
    pending = re.search(r'<section class="card" id="pending">.*?</section>', html, re.S)
    assert pending and f'data-decision-id="{proposal.id}"' in pending.group(0)
    assert "Front #" in pending.group(0) and "balanced" in pending.group(0)
    assert 'id="admins-only"' in html and "/approve/" not in html
    for verdict in ("approve", "reject"):
        response = client.post(f"/scheduling/decisions/{proposal.id}/{verdict}/", {"comment": "no"})
        assert response.status_code == 403
    proposal.refresh_from_db()
    assert proposal.status == DecisionStatus.PROPOSED and proposal.reviewed_by is None


def test_admins_approve_with_a_comment(admin_user: Any, proposal: Decision) -> None:
    client = logged_in(admin_user)
    html = client.get("/scheduling/decisions/").content.decode()
    assert f'action="/scheduling/decisions/{proposal.id}/approve/"' in html
    assert f'formaction="/scheduling/decisions/{proposal.id}/reject/"' in html

    response = client.post(
        f"/scheduling/decisions/{proposal.id}/approve/", {"comment": "ship it"}, follow=True
    )
    proposal.refresh_from_db()
    assert proposal.status == DecisionStatus.APPROVED
    assert proposal.reviewed_by == admin_user and proposal.review_comment == "ship it"
    html = response.content.decode()
    assert "is approved." in html and "Nothing waits for review." in html
    reviewed = re.search(r'<section class="card" id="reviewed">.*?</section>', html, re.S)
    assert reviewed and "pill-decision-approved" in reviewed.group(0)
    assert "ship it" in reviewed.group(0) and "/approve/" not in html

    # Reviewed is final: a second review is refused with a message.
    response = client.post(
        f"/scheduling/decisions/{proposal.id}/reject/", {"comment": "changed my mind"}, follow=True
    )
    assert "it cannot change" in response.content.decode()
    proposal.refresh_from_db()
    assert proposal.status == DecisionStatus.APPROVED


def test_approving_without_a_comment_is_fine(admin_user: Any, proposal: Decision) -> None:
    response = logged_in(admin_user).post(f"/scheduling/decisions/{proposal.id}/approve/", {})
    assert response.status_code == 302
    proposal.refresh_from_db()
    assert proposal.status == DecisionStatus.APPROVED and proposal.review_comment == ""


def test_rejecting_needs_a_comment(admin_user: Any, proposal: Decision) -> None:
    client = logged_in(admin_user)
    response = client.post(f"/scheduling/decisions/{proposal.id}/reject/", {"comment": "  "})
    assert response.status_code == 400
    row = re.search(
        rf'<tr data-decision-id="{proposal.id}">.*?</tr>', response.content.decode(), re.S
    )
    assert row and "Comment: Say why the decision is rejected." in row.group(0)
    assert 'class="field invalid"' in row.group(0)
    proposal.refresh_from_db()
    assert proposal.status == DecisionStatus.PROPOSED

    response = client.post(f"/scheduling/decisions/{proposal.id}/reject/", {"comment": "too slow"})
    assert response.status_code == 302
    proposal.refresh_from_db()
    assert proposal.status == DecisionStatus.REJECTED and proposal.review_comment == "too slow"


def test_unknown_objects_are_404(operator: Any, db: Any) -> None:
    client = logged_in(operator)
    for url in (
        f"/scheduling/workloads/{uuid.uuid4()}/",
        f"/scheduling/jobs/{uuid.uuid4()}/",
    ):
        assert client.get(url).status_code == 404
