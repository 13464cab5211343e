"""WfCommons WfFormat import: both schema layouts, and bad input refused by field and task."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scheduling.engine.generate import layered, with_fleet
from scheduling.engine.problem import parse_problem, parse_workload
from scheduling.engine.wfformat import (
    DEFAULT_MEMORY_MB,
    MIN_FLOPS,
    REFERENCE_GFLOPS,
    WfFormatError,
    is_wfformat,
    workload_from_wfformat,
)

DATA = Path(__file__).parent / "data"
FIXTURES = ("montage-1.5.json", "epigenomics-1.4.json", "seismology-1.3.json")


def load(name: str) -> dict[str, Any]:
    with (DATA / name).open() as handle:
        doc: dict[str, Any] = json.load(handle)
    return doc


def flops(runtime_s: float) -> float:
    return runtime_s * REFERENCE_GFLOPS * 1e9


def by_id(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task["id"]: task for task in workload["tasks"]}


def edge_bytes(workload: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(e["from"], e["to"]): e["bytes"] for e in workload["edges"]}


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_imports_into_a_valid_problem(name: str) -> None:
    doc = load(name)
    assert is_wfformat(doc)
    workload = workload_from_wfformat(doc)
    parse_workload(workload)
    problem = parse_problem(with_fleet(workload, devices=10, seed=3))
    assert len(problem.tasks) == len(workload["tasks"])


def test_schema_1_5_takes_runtime_memory_and_shared_file_sizes() -> None:
    workload = workload_from_wfformat(load("montage-1.5.json"))
    tasks = by_id(workload)
    assert len(tasks) == 10
    assert tasks["mProject_ID0000001"]["flops"] == pytest.approx(flops(13.4))
    assert tasks["mAdd_ID0000009"]["flops"] == pytest.approx(flops(3.66))
    # Recorded as 0 s, but the problem format needs flops > 0.
    assert tasks["mImgtbl_ID0000008"]["flops"] == MIN_FLOPS
    assert tasks["mProject_ID0000001"]["memory_mb"] == 12
    assert tasks["mAdd_ID0000009"]["memory_mb"] == 50
    assert tasks["mViewer_ID0000010"]["memory_mb"] == DEFAULT_MEMORY_MB
    image1, image2 = 2 * 8294400, 2 * 8297280  # each projected image and its area file
    assert edge_bytes(workload) == {
        ("mProject_ID0000001", "mDiffFit_ID0000003"): image1,
        ("mProject_ID0000002", "mDiffFit_ID0000003"): image2,
        ("mDiffFit_ID0000003", "mConcatFit_ID0000004"): 235,
        ("mConcatFit_ID0000004", "mBgModel_ID0000005"): 1180,
        ("mProject_ID0000001", "mBackground_ID0000006"): image1,
        ("mBgModel_ID0000005", "mBackground_ID0000006"): 329,
        ("mProject_ID0000002", "mBackground_ID0000007"): image2,
        ("mBgModel_ID0000005", "mBackground_ID0000007"): 329,
        ("mBackground_ID0000006", "mImgtbl_ID0000008"): 8294400,
        ("mBackground_ID0000007", "mImgtbl_ID0000008"): 8297280,
        ("mBackground_ID0000006", "mAdd_ID0000009"): 8294400,
        ("mBackground_ID0000007", "mAdd_ID0000009"): 8297280,
        ("mImgtbl_ID0000008", "mAdd_ID0000009"): 1832,
        ("mAdd_ID0000009", "mViewer_ID0000010"): 33177600,
    }


def test_schema_1_4_resolves_parents_by_name() -> None:
    workload = workload_from_wfformat(load("epigenomics-1.4.json"))
    tasks = by_id(workload)
    assert len(tasks) == 12
    assert tasks["map_ID0000008"]["flops"] == pytest.approx(flops(1953.5))
    # memoryInBytes rounded up to whole mebibytes.
    assert tasks["map_ID0000008"]["memory_mb"] == 185
    assert tasks["fastqSplit_ID0000001"]["memory_mb"] == 5
    assert tasks["pileup_ID0000012"]["memory_mb"] == DEFAULT_MEMORY_MB
    edges = edge_bytes(workload)
    chains = [(2, 4, 6, 8), (3, 5, 7, 9)]
    expected = {(1, chain[0]) for chain in chains} | {(chain[-1], 10) for chain in chains}
    expected |= {pair for chain in chains for pair in itertools.pairwise(chain)}
    expected |= {(10, 11), (11, 12)}
    assert {(_number(a), _number(b)) for a, b in edges} == expected
    assert edges[("fastqSplit_ID0000001", "filterContams_ID0000002")] == 12000000
    assert edges[("map_ID0000008", "mapMerge_ID0000010")] == 520000
    assert edges[("map_ID0000009", "mapMerge_ID0000010")] == 510000
    # The reference genome both read comes from outside the workflow, not from a parent.
    assert edges[("maqIndex_ID0000011", "pileup_ID0000012")] == 1070000


def _number(task_id: str) -> int:
    return int(task_id.rsplit("_ID", 1)[1])


def test_schema_1_3_reads_runtime_size_memory_in_kb_and_children() -> None:
    workload = workload_from_wfformat(load("seismology-1.3.json"))
    tasks = by_id(workload)
    assert tasks["sG1IterDecon_ID0000001"]["flops"] == pytest.approx(flops(2.95))
    assert tasks["sG1IterDecon_ID0000001"]["memory_mb"] == 20  # 20480 kB = 19.5 MiB
    sift = "wrapper_siftSTFByMisfit_ID0000004"
    assert edge_bytes(workload) == {
        ("sG1IterDecon_ID0000001", sift): 8192,
        ("sG1IterDecon_ID0000002", sift): 8192,
        ("sG1IterDecon_ID0000003", sift): 8200,
        # Declared only as the parent's child, and sharing no file: an edge of 0 bytes.
        (sift, "notify_ID0000005"): 0,
    }


def test_legacy_parents_may_name_a_task_by_its_old_id() -> None:
    doc = load("epigenomics-1.4.json")
    doc["workflow"]["tasks"][1]["parents"] = ["ID0000001"]
    edges = edge_bytes(workload_from_wfformat(doc))
    assert edges[("fastqSplit_ID0000001", "filterContams_ID0000002")] == 12000000


def test_jobs_spelling_of_schema_1_2_is_read_like_tasks() -> None:
    doc = load("seismology-1.3.json")
    doc["workflow"]["jobs"] = doc["workflow"].pop("tasks")
    expected = workload_from_wfformat(load("seismology-1.3.json"))
    assert workload_from_wfformat(doc) == expected


def test_is_wfformat_tells_workflows_from_problems() -> None:
    assert all(is_wfformat(load(name)) for name in FIXTURES)
    assert not is_wfformat(layered(10, 3, 0))
    assert not is_wfformat([])
    assert not is_wfformat({"workflow": {"name": "x"}})
    assert not is_wfformat({"workflow": []})


# --- bad input ---------------------------------------------------------------------------

# A mutation's return value is ignored; some return what they popped.
Mutation = Callable[[dict[str, Any]], object]


def _spec_task(doc: dict[str, Any], index: int) -> dict[str, Any]:
    task: dict[str, Any] = doc["workflow"]["specification"]["tasks"][index]
    return task


def _exec_task(doc: dict[str, Any], index: int) -> dict[str, Any]:
    task: dict[str, Any] = doc["workflow"]["execution"]["tasks"][index]
    return task


def _legacy_task(doc: dict[str, Any], index: int) -> dict[str, Any]:
    task: dict[str, Any] = doc["workflow"]["tasks"][index]
    return task


BAD_CURRENT: list[tuple[str, Mutation, str, str]] = [
    (
        "missing runtime",
        lambda d: _exec_task(d, 2).pop("runtimeInSeconds"),
        "workflow.execution.tasks[2].runtimeInSeconds",
        'missing runtime (task "mDiffFit_ID0000003")',
    ),
    (
        "no execution entry",
        lambda d: d["workflow"]["execution"]["tasks"].pop(4),
        "workflow.execution.tasks",
        'no runtimeInSeconds for task "mBgModel_ID0000005"',
    ),
    (
        "no execution section",
        lambda d: d["workflow"].pop("execution"),
        "workflow.execution.tasks",
        'no runtimeInSeconds for task "mProject_ID0000001"',
    ),
    (
        "negative runtime",
        lambda d: _exec_task(d, 0).update(runtimeInSeconds=-1.0),
        "workflow.execution.tasks[0].runtimeInSeconds",
        'task "mProject_ID0000001"',
    ),
    (
        "runtime not a number",
        lambda d: _exec_task(d, 0).update(runtimeInSeconds=True),
        "workflow.execution.tasks[0].runtimeInSeconds",
        'task "mProject_ID0000001"',
    ),
    (
        "runtime not finite",
        lambda d: _exec_task(d, 0).update(runtimeInSeconds=float("nan")),
        "workflow.execution.tasks[0].runtimeInSeconds",
        'task "mProject_ID0000001"',
    ),
    (
        "unknown parent",
        lambda d: _spec_task(d, 3)["parents"].append("mDiffFit_ID0000099"),
        "workflow.specification.tasks[3].parents",
        'unknown task "mDiffFit_ID0000099" (task "mConcatFit_ID0000004")',
    ),
    (
        "unknown child",
        lambda d: _spec_task(d, 9)["children"].append("mJPEG_ID0000011"),
        "workflow.specification.tasks[9].children",
        'unknown task "mJPEG_ID0000011" (task "mViewer_ID0000010")',
    ),
    (
        "own parent",
        lambda d: _spec_task(d, 3)["parents"].append("mConcatFit_ID0000004"),
        "workflow.specification.tasks[3].parents",
        'task "mConcatFit_ID0000004" depends on itself',
    ),
    (
        "negative file size",
        lambda d: d["workflow"]["specification"]["files"][7].update(sizeInBytes=-235),
        "workflow.specification.files[7].sizeInBytes",
        'file "fit.000001.000002.txt"',
    ),
    (
        "unknown file",
        lambda d: _spec_task(d, 4)["inputFiles"].append("missing.tbl"),
        "workflow.specification.tasks[4].inputFiles",
        'unknown file "missing.tbl" (task "mBgModel_ID0000005")',
    ),
    (
        "duplicate task",
        lambda d: _spec_task(d, 1).update(id="mProject_ID0000001"),
        "workflow.specification.tasks[1]",
        'duplicate task "mProject_ID0000001"',
    ),
    (
        "execution of an unknown task",
        lambda d: _exec_task(d, 0).update(id="mProject_ID0000042"),
        "workflow.execution.tasks[0].id",
        'unknown task "mProject_ID0000042"',
    ),
    (
        "no tasks",
        lambda d: d["workflow"]["specification"].update(tasks=[]),
        "workflow.specification.tasks",
        "at least one task",
    ),
    (
        "parents not a list",
        lambda d: _spec_task(d, 2).update(parents="mProject_ID0000001"),
        "workflow.specification.tasks[2].parents",
        'task "mDiffFit_ID0000003"',
    ),
]

BAD_LEGACY: list[tuple[str, Mutation, str, str]] = [
    (
        "missing runtime",
        lambda d: _legacy_task(d, 3).pop("runtimeInSeconds"),
        "workflow.tasks[3].runtime",
        'missing runtime (task "sol2sanger_ID0000004")',
    ),
    (
        "unknown parent",
        lambda d: _legacy_task(d, 10)["parents"].append("mapMerge_ID0000099"),
        "workflow.tasks[10].parents",
        'unknown task "mapMerge_ID0000099" (task "maqIndex_ID0000011")',
    ),
    (
        "negative file size",
        lambda d: _legacy_task(d, 7)["files"][1].update(sizeInBytes=-1),
        "workflow.tasks[7].files[1].sizeInBytes",
        'task "map_ID0000008"',
    ),
    (
        "missing file size",
        lambda d: _legacy_task(d, 7)["files"][1].pop("sizeInBytes"),
        "workflow.tasks[7].files[1].size",
        'missing file size (task "map_ID0000008")',
    ),
    (
        "bad file link",
        lambda d: _legacy_task(d, 7)["files"][1].update(link="both"),
        "workflow.tasks[7].files[1].link",
        'task "map_ID0000008"',
    ),
    (
        "negative memory",
        lambda d: _legacy_task(d, 0).update(memoryInBytes=-5),
        "workflow.tasks[0].memoryInBytes",
        'task "fastqSplit_ID0000001"',
    ),
    (
        "task without a name",
        lambda d: [_legacy_task(d, 2).pop(key) for key in ("name", "id")],
        "workflow.tasks[2].id",
        "non-empty string",
    ),
]


def _expect_error(doc: dict[str, Any], field: str, fragment: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(WfFormatError) as caught:
        workload_from_wfformat(doc)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"{field}: ")
    assert doc == before  # refusing a document leaves it as it was


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [case[1:] for case in BAD_CURRENT],
    ids=[case[0] for case in BAD_CURRENT],
)
def test_bad_schema_1_5_input_names_the_field_and_task(
    mutate: Mutation, field: str, fragment: str
) -> None:
    doc = load("montage-1.5.json")
    mutate(doc)
    _expect_error(doc, field, fragment)


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [case[1:] for case in BAD_LEGACY],
    ids=[case[0] for case in BAD_LEGACY],
)
def test_bad_schema_1_4_input_names_the_field_and_task(
    mutate: Mutation, field: str, fragment: str
) -> None:
    doc = load("epigenomics-1.4.json")
    mutate(doc)
    _expect_error(doc, field, fragment)


def test_memory_in_kb_of_schema_1_3_must_be_a_number() -> None:
    doc = load("seismology-1.3.json")
    _legacy_task(doc, 1)["memory"] = "20 MB"
    _expect_error(doc, "workflow.tasks[1].memory", 'task "sG1IterDecon_ID0000002"')


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "montage",
        {},
        {"tasks": [{"id": "a", "flops": 1, "memory_mb": 1}]},  # a problem, not a workflow
        {"workflow": {"name": "empty"}},
        {"workflow": {"specification": []}},
    ],
)
def test_not_a_workflow_at_all(doc: Any) -> None:
    with pytest.raises(WfFormatError) as caught:
        workload_from_wfformat(doc)
    assert caught.value.field == "workflow"
    assert "not a WfFormat workflow" in caught.value.message


def test_wfformat_error_is_a_value_error() -> None:
    assert issubclass(WfFormatError, ValueError)
