"""Instance generators: valid, deterministic problems of the requested size and shape."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from typing import Any

import pytest

from scheduling.engine.generate import (
    GENERATED_OBJECTIVES,
    SHAPES,
    epigenomics,
    generate_fleet,
    layered,
    montage,
    montage_pairs,
    tier_counts,
    video_pipeline,
)
from scheduling.engine.problem import parse_problem


def parents_of(doc: dict[str, Any]) -> dict[str, list[str]]:
    parents: dict[str, list[str]] = defaultdict(list)
    for edge in doc["edges"]:
        parents[edge["to"]].append(edge["from"])
    return parents


def ids(doc: dict[str, Any], prefix: str) -> list[str]:
    return [t["id"] for t in doc["tasks"] if t["id"].startswith(prefix)]


def device_memory(doc: dict[str, Any]) -> dict[str, float]:
    return {d["id"]: d["memory_mb"] for d in doc["devices"]}


# --- every shape -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("tasks", "devices"), [(20, 3), (100, 30), (500, 60)])
def test_every_shape_is_a_valid_problem_of_about_the_requested_size(
    shape: str, tasks: int, devices: int
) -> None:
    doc = SHAPES[shape](tasks, devices, 7)
    problem = parse_problem(doc)
    assert doc["format"] == "triad-scheduling/1"
    assert doc["objectives"] == list(GENERATED_OBJECTIVES) == ["makespan", "energy", "cost"]
    assert len(problem.devices) == devices
    assert abs(len(problem.tasks) - tasks) <= 0.1 * tasks
    # Plain JSON: no numpy scalars, and nothing changes on the way through.
    assert json.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_same_seed_same_document_other_seed_differs(shape: str) -> None:
    generate = SHAPES[shape]
    assert generate(60, 12, 5) == generate(60, 12, 5)
    assert generate(60, 12, 5) != generate(60, 12, 6)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_tiny_requests_still_give_valid_problems(shape: str) -> None:
    for tasks in (1, 2, 5):
        parse_problem(SHAPES[shape](tasks, 3, 0))


def test_shapes_on_the_same_devices_and_seed_share_the_fleet() -> None:
    fleets = [(doc["devices"], doc["links"]) for doc in (s(40, 20, 9) for s in SHAPES.values())]
    assert all(fleet == fleets[0] for fleet in fleets)
    assert fleets[0] == generate_fleet(20, 9)


# --- fleet -------------------------------------------------------------------------------


@pytest.mark.parametrize("devices", range(1, 41))
def test_fleet_tier_counts(devices: int) -> None:
    counts = tier_counts(devices)
    assert sum(counts.values()) == devices
    assert counts["cloud"] >= 1
    assert counts["edge"] >= (1 if devices >= 2 else 0)
    assert counts["end"] >= (1 if devices >= 3 else 0)
    if devices >= 10:
        assert abs(counts["cloud"] - 0.1 * devices) <= 1
        assert abs(counts["edge"] - 0.3 * devices) <= 1


def test_fleet_of_thirty() -> None:
    devices, _ = generate_fleet(30, 1)
    tiers = [d["tier"] for d in devices]
    assert (tiers.count("cloud"), tiers.count("edge"), tiers.count("end")) == (3, 9, 18)
    for device in devices:
        assert re.fullmatch(rf"{device['tier']}-\d+", device["id"])


SPEC_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "cloud": {
        "gflops": (500, 2000),
        "memory_mb": (64 * 1024, 256 * 1024),
        "power_idle_w": (100, 200),
        "power_busy_w": (300, 500),
        "cost_per_hour": (1, 4),
    },
    "edge": {
        "gflops": (50, 300),
        "memory_mb": (8 * 1024, 32 * 1024),
        "power_idle_w": (20, 60),
        "power_busy_w": (60, 150),
        "cost_per_hour": (0.05, 0.3),
    },
    "end": {
        "gflops": (2, 20),
        "memory_mb": (1024, 4 * 1024),
        "power_idle_w": (1, 4),
        "power_busy_w": (4, 15),
        "cost_per_hour": (0, 0),
    },
}


def test_fleet_specs_are_jittered_within_each_tier() -> None:
    devices, _ = generate_fleet(200, 4)
    for device in devices:
        for key, (low, high) in SPEC_RANGES[device["tier"]].items():
            assert low <= device[key] <= high, (device["id"], key)
        assert device["power_idle_w"] <= device["power_busy_w"]
    edge_speeds = {d["gflops"] for d in devices if d["tier"] == "edge"}
    assert len(edge_speeds) > 50  # jittered, not one value per tier


def test_fleet_links_each_end_device_to_a_nearby_edge_server() -> None:
    devices, links = generate_fleet(30, 2)
    edges = {d["id"] for d in devices if d["tier"] == "edge"}
    ends = [d["id"] for d in devices if d["tier"] == "end"]
    assert [link["from"] for link in links] == ends
    for link in links:
        assert link["to"] in edges
        assert 50 <= link["bandwidth_mbps"] <= 300
        assert 2 <= link["latency_ms"] <= 8
        assert link["energy_j_per_mb"] >= 0
    assert len({link["to"] for link in links}) > 1  # spread over the edge servers


def test_fleet_needs_a_device() -> None:
    with pytest.raises(ValueError, match="at least one device"):
        generate_fleet(0, 1)


# --- video pipeline ----------------------------------------------------------------------


def test_video_pipeline_of_twenty_cameras_on_thirty_devices() -> None:
    doc = video_pipeline(20, 30, 3)
    parse_problem(doc)
    assert len(doc["tasks"]) == 4 * 20 + 2
    parents = parents_of(doc)
    tasks = {t["id"]: t for t in doc["tasks"]}
    for i in range(20):
        assert tasks[f"decode-{i}"]["pinned_to"] == f"end-{i % 18}"
        assert parents[f"detect-{i}"] == [f"decode-{i}"]
        assert parents[f"track-{i}"] == [f"detect-{i}"]
        assert parents[f"reid-{i}"] == [f"track-{i}"]
    assert sorted(parents["aggregate"]) == sorted(f"reid-{i}" for i in range(20))
    assert parents["alert"] == ["aggregate"]
    assert "deadline_s" not in tasks["alert"]


def test_video_pipeline_sizes_make_placement_matter() -> None:
    doc = video_pipeline(20, 30, 3)
    tasks = {t["id"]: t for t in doc["tasks"]}
    memory = device_memory(doc)
    smallest_end = min(m for d, m in memory.items() if d.startswith("end-"))
    detects = [tasks[f"detect-{i}"] for i in range(20)]
    assert all(1e10 * 0.8 <= t["flops"] <= 5e10 for t in detects)
    assert all(1024 <= t["memory_mb"] <= 3072 for t in detects)
    # Some detectors do not fit on the smaller cameras.
    assert any(t["memory_mb"] > smallest_end for t in detects)
    assert all(3e9 <= tasks[f"reid-{i}"]["flops"] <= 7e9 for i in range(20))
    frames = [e["bytes"] for e in doc["edges"] if e["from"].startswith("decode-")]
    assert all(e % (1920 * 1080 * 3) == 0 and e >= 1920 * 1080 * 3 for e in frames)


def test_video_pipeline_cameras_share_end_devices_when_few() -> None:
    doc = video_pipeline(5, 4, 0)  # 1 cloud, 1 edge, 2 end devices
    pins = [t["pinned_to"] for t in doc["tasks"] if t["id"].startswith("decode-")]
    assert pins == ["end-0", "end-1", "end-0", "end-1", "end-0"]


def test_video_pipeline_alert_deadline() -> None:
    doc = video_pipeline(3, 10, 0, alert_deadline_s=2.5)
    parse_problem(doc)
    assert {t["id"]: t.get("deadline_s") for t in doc["tasks"]}["alert"] == 2.5


def test_video_pipeline_by_task_count() -> None:
    assert len(SHAPES["video-pipeline"](82, 30, 1)["tasks"]) == 82
    assert SHAPES["video-pipeline"](82, 30, 1) == video_pipeline(20, 30, 1)


@pytest.mark.parametrize(("cameras", "devices"), [(0, 10), (3, 2)])
def test_video_pipeline_refuses_no_camera_or_no_end_device(cameras: int, devices: int) -> None:
    with pytest.raises(ValueError):
        video_pipeline(cameras, devices, 0)


# --- Montage -----------------------------------------------------------------------------


def test_montage_structure() -> None:
    doc = montage(100, 10, 2)
    parse_problem(doc)
    parents = parents_of(doc)
    projects, backgrounds = ids(doc, "mProject-"), ids(doc, "mBackground-")
    diffs = ids(doc, "mDiffFit-")
    assert len(projects) == len(backgrounds) >= 2
    assert len(diffs) == len(montage_pairs(len(projects)))
    for diff in diffs:
        assert len(parents[diff]) == 2
        assert all(p.startswith("mProject-") for p in parents[diff])
    assert sorted(parents["mConcatFit"]) == sorted(diffs)
    assert parents["mBgModel"] == ["mConcatFit"]
    for i, background in enumerate(backgrounds):
        assert sorted(parents[background]) == sorted([f"mProject-{i}", "mBgModel"])
    assert ids(doc, "mAdd") == ["mAdd"]
    assert set(parents["mAdd"]) == {*backgrounds, "mImgtbl"}
    assert sorted(parents["mImgtbl"]) == sorted(backgrounds)
    assert parents["mShrink"] == ["mAdd"]
    assert parents["mJPEG"] == ["mShrink"]


def test_montage_overlaps_are_grid_neighbours() -> None:
    assert montage_pairs(1) == []
    assert montage_pairs(2) == [(0, 1)]
    # 2 x 2 grid: two rows, two columns, two diagonals.
    assert sorted(montage_pairs(4)) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    # About 2.5-4 overlaps per image, as in Pegasus Montage runs.
    assert 2.5 <= len(montage_pairs(100)) / 100 <= 4


def test_montage_image_edges_carry_megabytes() -> None:
    doc = montage(100, 10, 2)
    image_edges = [e for e in doc["edges"] if e["from"].startswith("mProject-")]
    assert all(3e6 <= e["bytes"] <= 55e6 for e in image_edges)


# --- Epigenomics -------------------------------------------------------------------------


def test_epigenomics_structure() -> None:
    doc = epigenomics(500, 30, 4)
    parse_problem(doc)
    parents = parents_of(doc)
    splits = ids(doc, "fastqSplit-")
    lane_merges = ids(doc, "mapMerge-")
    assert len(splits) == len(lane_merges) == 5
    for lane in range(5):
        maps = ids(doc, f"map-{lane}-")
        assert len(maps) == len(ids(doc, f"filterContams-{lane}-")) >= 2
        assert sorted(parents[f"mapMerge-{lane}"]) == sorted(maps)
        for chunk in range(len(maps)):
            chain = [f"{stage}-{lane}-{chunk}" for stage in ("sol2sanger", "fast2bfq", "map")]
            assert parents[f"filterContams-{lane}-{chunk}"] == [f"fastqSplit-{lane}"]
            assert parents[chain[0]] == [f"filterContams-{lane}-{chunk}"]
            assert parents[chain[1]] == [chain[0]]
            assert parents[chain[2]] == [chain[1]]
    assert sorted(parents["mapMerge"]) == sorted(lane_merges)
    assert parents["maqIndex"] == ["mapMerge"]
    assert parents["pileup"] == ["maqIndex"]


def test_epigenomics_map_dominates_the_work() -> None:
    doc = epigenomics(100, 10, 1)
    work: dict[str, float] = defaultdict(float)
    for task in doc["tasks"]:
        work[task["id"].split("-")[0]] += task["flops"]
    assert max(work, key=lambda kind: work[kind]) == "map"


# --- layered -----------------------------------------------------------------------------


def test_layered_structure() -> None:
    doc = layered(400, 20, 8)
    parse_problem(doc)
    order = {t["id"]: i for i, t in enumerate(doc["tasks"])}
    assert list(order) == [f"t{i}" for i in range(400)]
    parents = parents_of(doc)
    sources = [t for t in order if t not in parents]
    width = math.sqrt(400)
    assert width / 2 <= len(sources) <= 1.5 * width
    for task, task_parents in parents.items():
        assert 1 <= len(task_parents) <= 3
        assert len(set(task_parents)) == len(task_parents)
        assert all(order[p] < order[task] for p in task_parents)


def test_layered_needs_a_task() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        layered(0, 3, 0)
