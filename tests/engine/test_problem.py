"""Problem documents: accepted as documented, refused with the field and the task named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scheduling.engine import ProblemError, parse_problem, parse_workload
from tests.engine.helpers import device, edge, problem_document, task


def good() -> dict[str, Any]:
    return problem_document(
        [task("decode", pinned_to="end"), task("detect", memory_mb=2000), task("alert")],
        [edge("decode", "detect"), edge("detect", "alert")],
        [device("cam", tier="end", memory_mb=512), device("box"), device("dc", tier="cloud")],
        objectives=("makespan", "energy"),
    )


def test_a_good_document_round_trips() -> None:
    problem = parse_problem(good())
    assert [t.id for t in problem.tasks] == ["decode", "detect", "alert"]
    assert parse_problem(problem.to_json()) == problem


def test_pins_and_memory_decide_where_a_task_may_run() -> None:
    allowed = parse_problem(good()).arrays.allowed
    assert allowed.tolist() == [
        [True, False, False],  # pinned to the end tier
        [False, True, True],  # 2000 MB does not fit the camera
        [True, True, True],
    ]


def test_links_are_looked_up_most_specific_first() -> None:
    document = good()
    document["links"] = [
        {"from": "edge", "to": "cloud", "bandwidth_mbps": 100, "latency_ms": 30},
        {"from": "box", "to": "cloud", "bandwidth_mbps": 200, "latency_ms": 20},
        {"from": "dc", "to": "box", "bandwidth_mbps": 400, "latency_ms": 10},
    ]
    problem = parse_problem(document)
    cam, box, dc = problem.devices
    assert problem.link_between(box, dc).bandwidth_mbps == 400
    assert problem.link_between(cam, dc).bandwidth_mbps == 50  # built-in cloud-end default
    arrays = problem.arrays
    assert arrays.latency_s[1, 2] == arrays.latency_s[2, 1] == pytest.approx(0.010)
    assert arrays.bytes_per_s[1, 2] == pytest.approx(400e6 / 8)


Mutation = Callable[[dict[str, Any]], None]


def set_at(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


DELETE = object()

BAD_INPUT: list[tuple[str, Mutation, str, str]] = [
    ("cycle", lambda d: d["edges"].append(edge("alert", "decode")), "edges",
     "decode -> detect -> alert -> decode"),
    ("unknown dependency", lambda d: d["edges"].append(edge("detect", "ghost")), "edges[2].to",
     "unknown task 'ghost'"),
    ("self dependency", lambda d: d["edges"].append(edge("alert", "alert")), "edges[2]",
     "'alert' cannot depend on itself"),
    ("duplicate edge", lambda d: d["edges"].append(edge("decode", "detect")), "edges[2]",
     "duplicate edge"),
    ("duplicate task", lambda d: d["tasks"].append(task("detect")), "tasks[3].id",
     "duplicate task id 'detect'"),
    ("duplicate device", lambda d: d["devices"].append(device("box")), "devices[3].id",
     "duplicate device id 'box'"),
    ("negative flops", set_at(("tasks", 1, "flops"), -5), "tasks[1].flops", "task 'detect'"),
    ("missing flops", set_at(("tasks", 1, "flops"), DELETE), "tasks[1].flops", "is required"),
    ("text memory", set_at(("tasks", 0, "memory_mb"), "lots"), "tasks[0].memory_mb",
     "must be a number >= 0"),
    ("infinite bytes", set_at(("edges", 0, "bytes"), float("inf")), "edges[0].bytes",
     "edge 'decode' -> 'detect'"),
    ("missing id", set_at(("tasks", 2, "id"), ""), "tasks[2].id", "non-empty string"),
    ("overlong id", set_at(("tasks", 2, "id"), "9" * 201), "tasks[2].id", "at most 200"),
    ("pin to an unknown device", set_at(("tasks", 2, "pinned_to"), "cam-9"),
     "tasks[2].pinned_to", "task 'alert' is pinned to unknown device or tier 'cam-9'"),
    ("no device has the memory", set_at(("tasks", 1, "memory_mb"), 10**7), "tasks[1].memory_mb",
     "no device in the fleet has the 1e+07 MB task 'detect' needs"),
    ("pinned device lacks the memory", set_at(("tasks", 0, "memory_mb"), 1024),
     "tasks[0].memory_mb", "no device pinned to 'end' has the 1024 MB task 'decode' needs"),
    ("empty fleet", set_at(("devices",), []), "devices", "the fleet is empty"),
    ("no tasks", set_at(("tasks",), []), "tasks", "no tasks"),
    ("tasks not a list", set_at(("tasks",), {"a": 1}), "tasks", "must be a list"),
    ("unknown tier", set_at(("devices", 1, "tier"), "fog"), "devices[1].tier", "device 'box'"),
    ("zero speed", set_at(("devices", 1, "gflops"), 0), "devices[1].gflops", "> 0"),
    ("busy below idle", set_at(("devices", 1, "power_busy_w"), 1), "devices[1].power_busy_w",
     "busy power is below idle power (device 'box')"),
    ("link to unknown device", set_at(("links", 0, "to"), "moon"), "links[0].to",
     "unknown device or tier 'moon'"),
    ("zero bandwidth", set_at(("links", 0, "bandwidth_mbps"), 0), "links[0].bandwidth_mbps", "> 0"),
    ("unknown objective", set_at(("objectives",), ["makespan", "speed"]), "objectives",
     "unknown objective 'speed'"),
    ("zero runtime", set_at(("tasks", 2, "runtime_s"), {"box": 0}), "tasks[2].runtime_s.box",
     "must be a number > 0 (task 'alert')"),
    ("runtime on unknown device", set_at(("tasks", 2, "runtime_s"), {"nowhere": 1}),
     "tasks[2].runtime_s", "unknown device 'nowhere'"),
    ("wrong format", set_at(("format",), "other/9"), "format", "unsupported format"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_is_refused_with_the_field_named(
    mutate: Mutation, field: str, message: str
) -> None:
    document = good()
    mutate(document)
    with pytest.raises(ProblemError) as refused:
        parse_problem(document)
    assert refused.value.field == field
    assert message in str(refused.value)


def test_not_an_object_is_refused() -> None:
    with pytest.raises(ProblemError, match="must be a JSON object"):
        parse_problem(["tasks"])


def test_a_workload_is_checked_without_a_fleet() -> None:
    document = good()
    tasks, edges = parse_workload({"tasks": document["tasks"], "edges": document["edges"]})
    assert len(tasks) == 3 and len(edges) == 2
    with pytest.raises(ProblemError) as refused:
        parse_workload({"tasks": document["tasks"], "edges": [edge("alert", "nobody")]})
    assert refused.value.field == "edges[0].to"
