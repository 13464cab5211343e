"""Deterministic generators of scheduling problems, for tests, benchmarks and demos.

Every generator is seeded with ``numpy.random.default_rng``: the same arguments give the
same document, key for key. Documents follow docs/scheduling-format.md (version 1) and are
plain JSON-able dicts (Python ints, floats and strings, no numpy scalars).

- :func:`generate_fleet`: a three-tier fleet (about 10% cloud, 30% edge, the rest end
  devices) with jittered specs, and a device-to-device link from each end device to a
  nearby edge server; other pairs use the format's built-in tier defaults.
  :func:`tier_counts` says how a fleet size splits into tiers.
- :func:`with_fleet`: a problem running any workload (``tasks`` and ``edges``, e.g. one
  imported by :mod:`~scheduling.engine.wfformat`) on a generated fleet.
- :func:`video_pipeline`: the city video-analytics pipeline (decode, detect, track and
  re-identify per camera, then one aggregate and one alert).
- :func:`montage`, :func:`epigenomics`: the shapes of the Pegasus / WfCommons scientific
  workflows, with runtimes typical of their published traces turned into flops at
  :data:`~scheduling.engine.wfformat.REFERENCE_GFLOPS`.
- :func:`layered`: a random layered DAG.
- :data:`SHAPES`: the workload shapes by name, each ``(tasks, devices, seed) -> problem``.

A shape's fleet depends only on ``(devices, seed)``, so different shapes generated with the
same arguments run on the same fleet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scheduling.engine.problem import FORMAT
from scheduling.engine.wfformat import REFERENCE_GFLOPS

GENERATED_OBJECTIVES = ("makespan", "energy", "cost")

# Distinguishes the workload's random stream from the fleet's, which uses the bare seed.
_WORKLOAD_STREAM = 1

Range = tuple[float, float]
ProblemDoc = dict[str, Any]
Shape = Callable[[int, int, int], ProblemDoc]


# --- fleet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TierSpec:
    """Jitter ranges for one tier's hardware."""

    gflops: Range
    memory_gb: Range
    memory_step_gb: float
    idle_w: Range
    busy_w: Range
    cost_per_hour: Range


_TIER_SPECS = {
    "cloud": _TierSpec((500, 2000), (64, 256), 1.0, (100, 200), (300, 500), (1.0, 4.0)),
    "edge": _TierSpec((50, 300), (8, 32), 1.0, (20, 60), (60, 150), (0.05, 0.3)),
    "end": _TierSpec((2, 20), (1, 4), 0.5, (1, 4), (4, 15), (0.0, 0.0)),
}

# The link from an end device to its nearby edge server (access network, e.g. Wi-Fi 6 or
# 5G small cell): faster and closer than the built-in edge-end default.
_ACCESS_MBPS: Range = (50, 300)
_ACCESS_LATENCY_MS: Range = (2, 8)
_ACCESS_J_PER_MB: Range = (0.3, 0.6)


def tier_counts(devices: int) -> dict[str, int]:
    """How many devices of each tier a fleet of ``devices`` has (cloud, edge, end)."""
    if devices < 1:
        raise ValueError(f"a fleet needs at least one device, not {devices}")
    cloud = max(1, round(0.1 * devices))
    # Capped so that one or two devices make a cloud server and an edge server; from three
    # devices on, 10% + 30% (each at least 1) always leaves at least one end device.
    edge = min(max(1, round(0.3 * devices)), devices - cloud)
    return {"cloud": cloud, "edge": edge, "end": devices - cloud - edge}


def generate_fleet(devices: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return ``(devices, links)`` for a jittered three-tier fleet of ``devices`` devices."""
    rng = np.random.default_rng(seed)
    counts = tier_counts(devices)
    fleet = [_device(f"{tier}-{i}", tier, rng) for tier, n in counts.items() for i in range(n)]
    links = [
        _access_link(f"end-{i}", f"edge-{int(rng.integers(counts['edge']))}", rng)
        for i in range(counts["end"])
    ]
    return fleet, links


def _device(device_id: str, tier: str, rng: np.random.Generator) -> dict[str, Any]:
    spec = _TIER_SPECS[tier]
    step = spec.memory_step_gb
    memory_gb = max(spec.memory_gb[0], round(_draw(rng, spec.memory_gb) / step) * step)
    return {
        "id": device_id,
        "tier": tier,
        "gflops": round(_draw(rng, spec.gflops), 1),
        "memory_mb": int(memory_gb * 1024),
        "power_idle_w": round(_draw(rng, spec.idle_w), 1),
        "power_busy_w": round(_draw(rng, spec.busy_w), 1),
        "cost_per_hour": round(_draw(rng, spec.cost_per_hour), 3),
    }


def _access_link(end: str, edge: str, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "from": end,
        "to": edge,
        "bandwidth_mbps": round(_draw(rng, _ACCESS_MBPS), 1),
        "latency_ms": round(_draw(rng, _ACCESS_LATENCY_MS), 2),
        "energy_j_per_mb": round(_draw(rng, _ACCESS_J_PER_MB), 3),
    }


# --- workload building blocks ------------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    """Ranges for one task type: runtime at the reference speed, memory, output size."""

    runtime_s: Range
    memory_mb: Range
    output_bytes: Range


@dataclass
class _Graph:
    """A workload under construction, drawing sizes from one random stream."""

    rng: np.random.Generator
    tasks: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)

    def add(self, task_id: str, flops: float, memory_mb: float, **extra: Any) -> str:
        self.tasks.append(
            {"id": task_id, "flops": float(flops), "memory_mb": float(memory_mb), **extra}
        )
        return task_id

    def add_typed(self, task_id: str, profile: _Profile) -> str:
        """Add a task whose runtime and memory are drawn from ``profile``."""
        runtime_s = _draw(self.rng, profile.runtime_s)
        return self.add(
            task_id,
            flops=round(runtime_s * REFERENCE_GFLOPS * 1e9),
            memory_mb=round(_draw(self.rng, profile.memory_mb)),
        )

    def link(self, src: str, dst: str, size: float) -> None:
        self.edges.append({"from": src, "to": dst, "bytes": int(size)})

    def size(self, profile: _Profile) -> int:
        """An output file size for ``profile``, log-uniform: file sizes span decades."""
        return int(_draw_log(self.rng, profile.output_bytes))


def _workload_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([_WORKLOAD_STREAM, seed])


def _draw(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _draw_log(rng: np.random.Generator, bounds: Range) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def with_fleet(
    workload: dict[str, Any],
    devices: int,
    seed: int,
    objectives: Sequence[str] = GENERATED_OBJECTIVES,
) -> ProblemDoc:
    """A problem document running ``workload`` (its ``tasks`` and ``edges``) on a fleet."""
    fleet, links = generate_fleet(devices, seed)
    return {
        "format": FORMAT,
        "tasks": workload["tasks"],
        "edges": workload["edges"],
        "devices": fleet,
        "links": links,
        "objectives": list(objectives),
    }


def _problem(graph: _Graph, devices: int, seed: int) -> ProblemDoc:
    return with_fleet({"tasks": graph.tasks, "edges": graph.edges}, devices, seed)


# --- video analytics ---------------------------------------------------------------------

# One batch is 1-4 decoded 1080p RGB frames (1920 x 1080 x 3 bytes each).
_FRAME_BYTES = 1920 * 1080 * 3
_FRAMES_PER_BATCH = (1, 4)
# A YOLO-class detector at 1080p: about 1e10 operations per frame.
_DETECT_FLOPS_PER_FRAME: Range = (0.8e10, 1.25e10)
# Large enough that the smaller end devices (1-4 GB) cannot hold some detectors.
_DETECT_MEMORY_MB: Range = (1024, 3072)


def video_pipeline(
    cameras: int, devices: int, seed: int, *, alert_deadline_s: float | None = None
) -> ProblemDoc:
    """The city video-analytics pipeline: ``4 * cameras + 2`` tasks on ``devices`` devices.

    Camera ``i`` is end device ``end-{i mod n_end}``; its ``decode-{i}`` is pinned there and
    feeds ``detect-{i}`` -> ``track-{i}`` -> ``reid-{i}``; every ``reid-*`` feeds one
    ``aggregate`` (cross-camera association), which feeds ``alert``. ``alert_deadline_s``,
    when given, is the deadline of ``alert``.
    """
    if cameras < 1:
        raise ValueError(f"the pipeline needs at least one camera, not {cameras}")
    n_end = tier_counts(devices)["end"]
    if n_end < 1:
        raise ValueError(f"the pipeline needs end devices for its cameras: {devices} is < 3")
    graph = _Graph(_workload_rng(seed))
    reids = [_camera_chain(graph, i, f"end-{i % n_end}") for i in range(cameras)]
    rng = graph.rng
    # Cross-camera association grows with the number of cameras.
    aggregate = graph.add(
        "aggregate",
        flops=cameras * _draw(rng, (1e8, 4e8)),
        memory_mb=round(_draw(rng, (512, 2048))),
    )
    for reid in reids:
        # Appearance embeddings: 20-100 objects x 512 float32 values.
        graph.link(reid, aggregate, int(rng.integers(20, 101)) * 512 * 4)
    extra = {} if alert_deadline_s is None else {"deadline_s": float(alert_deadline_s)}
    alert = graph.add("alert", flops=_draw(rng, (1e7, 1e8)), memory_mb=64, **extra)
    graph.link(aggregate, alert, int(rng.integers(1_000, 10_001)))
    return _problem(graph, devices, seed)


def _camera_chain(graph: _Graph, i: int, camera: str) -> str:
    """Add one camera's decode -> detect -> track -> reid chain; return the reid task."""
    rng = graph.rng
    frames = int(rng.integers(_FRAMES_PER_BATCH[0], _FRAMES_PER_BATCH[1] + 1))
    decode = graph.add(
        f"decode-{i}",
        # H.264 decoding: about 0.3-0.5 GFLOP per 1080p frame.
        flops=frames * _draw(rng, (3e8, 5e8)),
        memory_mb=round(_draw(rng, (128, 256))),
        pinned_to=camera,
    )
    detect = graph.add(
        f"detect-{i}",
        flops=frames * _draw(rng, _DETECT_FLOPS_PER_FRAME),
        memory_mb=round(_draw(rng, _DETECT_MEMORY_MB)),
    )
    graph.link(decode, detect, frames * _FRAME_BYTES)
    track = graph.add(
        f"track-{i}", flops=_draw(rng, (1e8, 5e8)), memory_mb=round(_draw(rng, (64, 128)))
    )
    # Bounding boxes and scores: a few kilobytes per frame.
    graph.link(detect, track, frames * int(rng.integers(2_000, 20_001)))
    reid = graph.add(
        f"reid-{i}", flops=_draw(rng, (3e9, 7e9)), memory_mb=round(_draw(rng, (512, 1024)))
    )
    # Tracklets with their person crops (128 x 256 RGB, 98 KB each), 5-50 per batch.
    graph.link(track, reid, int(rng.integers(5, 51)) * 128 * 256 * 3)
    return reid


def _video_by_tasks(tasks: int, devices: int, seed: int) -> ProblemDoc:
    return video_pipeline(max(1, (tasks - 2) // 4), devices, seed)


# --- Montage -----------------------------------------------------------------------------

# Ranges after the Pegasus Montage traces (Juve et al., "Characterizing and profiling
# scientific workflows", FGCS 2013, and the WfCommons montage recipe's task statistics).
_MONTAGE = {
    "mProject": _Profile((1.0, 15.0), (64, 256), (3e6, 55e6)),
    "mDiffFit": _Profile((0.3, 3.0), (32, 128), (50, 300)),
    "mConcatFit": _Profile((5.0, 150.0), (64, 256), (4e3, 4e5)),
    "mBgModel": _Profile((10.0, 400.0), (64, 256), (2e2, 2.4e4)),
    # Output range unused: montage() gives a corrected image its projected input's size.
    "mBackground": _Profile((0.5, 10.0), (64, 256), (3e6, 55e6)),
    "mImgtbl": _Profile((0.5, 3.0), (32, 128), (1e3, 2e5)),
    "mAdd": _Profile((20.0, 300.0), (512, 2048), (1e8, 4e8)),
    "mShrink": _Profile((5.0, 70.0), (256, 1024), (4e5, 5e6)),
    "mJPEG": _Profile((0.5, 5.0), (64, 256), (1e5, 1e6)),
}


def montage_pairs(images: int) -> list[tuple[int, int]]:
    """Overlapping image pairs of a mosaic: 8-neighbours on a near-square grid."""
    columns = max(1, math.ceil(math.sqrt(images)))
    pairs = []
    for i in range(images):
        row, col = divmod(i, columns)
        neighbours = [(row, col + 1), (row + 1, col - 1), (row + 1, col), (row + 1, col + 1)]
        for r, c in neighbours:
            j = r * columns + c
            if 0 <= c < columns and j < images:
                pairs.append((i, j))
    return pairs


def _montage_size(images: int) -> int:
    # mProject and mBackground per image, mDiffFit per pair, six single tasks.
    return 2 * images + len(montage_pairs(images)) + 6


def _montage_images(tasks: int) -> int:
    """The image count whose Montage has the task count nearest ``tasks``."""
    # The task count grows with the image count: bisect for the first one reaching
    # ``tasks``, then take it or the one before, whichever is nearer.
    low, high = 1, max(1, tasks)
    while low < high:
        middle = (low + high) // 2
        if _montage_size(middle) < tasks:
            low = middle + 1
        else:
            high = middle
    if low > 1 and tasks - _montage_size(low - 1) <= _montage_size(low) - tasks:
        return low - 1
    return low


def montage(tasks: int, devices: int, seed: int) -> ProblemDoc:
    """A Montage mosaic workflow with about ``tasks`` tasks.

    mProject per image -> mDiffFit per overlapping pair -> mConcatFit -> mBgModel ->
    mBackground per image (also fed by its mProject) -> mImgtbl -> mAdd (also fed by every
    mBackground) -> mShrink -> mJPEG.
    """
    graph = _Graph(_workload_rng(seed))
    images = _montage_images(tasks)
    projected = [_montage_task(graph, "mProject", i) for i in range(images)]
    image_bytes = [graph.size(_MONTAGE["mProject"]) for _ in projected]
    diffs = []
    for k, (a, b) in enumerate(montage_pairs(images)):
        diffs.append(_montage_task(graph, "mDiffFit", k))
        graph.link(projected[a], diffs[-1], image_bytes[a])
        graph.link(projected[b], diffs[-1], image_bytes[b])
    concat = _montage_task(graph, "mConcatFit")
    for diff in diffs:
        graph.link(diff, concat, graph.size(_MONTAGE["mDiffFit"]))
    model = _montage_chain(graph, concat, ["mBgModel"])
    corrected = [_montage_task(graph, "mBackground", i) for i in range(images)]
    corrections = graph.size(_MONTAGE["mBgModel"])
    table = _montage_task(graph, "mImgtbl")
    add = _montage_task(graph, "mAdd")
    for i, background in enumerate(corrected):
        graph.link(projected[i], background, image_bytes[i])
        graph.link(model, background, corrections)
        # A corrected image is as large as the projected one; mImgtbl and mAdd both read
        # it, as in the Pegasus traces.
        graph.link(background, table, image_bytes[i])
        graph.link(background, add, image_bytes[i])
    graph.link(table, add, graph.size(_MONTAGE["mImgtbl"]))
    _montage_chain(graph, add, ["mShrink", "mJPEG"])
    return _problem(graph, devices, seed)


def _montage_task(graph: _Graph, kind: str, index: int | None = None) -> str:
    task_id = kind if index is None else f"{kind}-{index}"
    return graph.add_typed(task_id, _MONTAGE[kind])


def _montage_chain(graph: _Graph, head: str, kinds: list[str]) -> str:
    """Append single Montage tasks after ``head``, each fed by the one before."""
    for kind in kinds:
        nxt = _montage_task(graph, kind)
        graph.link(head, nxt, graph.size(_MONTAGE[_kind(head)]))
        head = nxt
    return head


def _kind(task_id: str) -> str:
    return task_id.split("-", 1)[0]


# --- Epigenomics -------------------------------------------------------------------------

# Ranges after the Pegasus Epigenomics (USC Epigenome Center) traces, same sources as Montage.
_EPIGENOMICS = {
    "fastqSplit": _Profile((10.0, 60.0), (16, 64), (5e6, 2.5e7)),
    "filterContams": _Profile((1.0, 5.0), (16, 64), (5e6, 1.5e7)),
    "sol2sanger": _Profile((0.3, 1.5), (16, 64), (4e6, 1e7)),
    "fast2bfq": _Profile((0.5, 3.0), (16, 64), (1e6, 3e6)),
    "map": _Profile((200.0, 2500.0), (128, 512), (2e5, 1e6)),
    "mapMerge": _Profile((5.0, 50.0), (32, 128), (1e7, 5e7)),
    "maqIndex": _Profile((20.0, 80.0), (128, 512), (5e7, 2e8)),
    "pileup": _Profile((30.0, 120.0), (128, 512), (5e7, 1.5e8)),
}
_LANE_STAGES = ("filterContams", "sol2sanger", "fast2bfq", "map")
_MAX_LANES = 8


def _epigenomics_shape(tasks: int) -> tuple[int, int]:
    """``(lanes, chunks per lane)`` giving about ``tasks`` tasks.

    A lane has fastqSplit, mapMerge and a four-stage chain per chunk; three global tasks
    follow. Real runs have a few lanes of many chunks, about one lane per 100 tasks.
    """
    lanes = min(_MAX_LANES, max(1, round(tasks / 100)))
    chunks = max(1, round(((tasks - 3) / lanes - 2) / len(_LANE_STAGES)))
    return lanes, chunks


def epigenomics(tasks: int, devices: int, seed: int) -> ProblemDoc:
    """An Epigenomics (genome sequence mapping) workflow with about ``tasks`` tasks.

    Per lane: fastqSplit -> per chunk filterContams -> sol2sanger -> fast2bfq -> map, all
    maps -> the lane's mapMerge; then the global mapMerge -> maqIndex -> pileup.
    """
    graph = _Graph(_workload_rng(seed))
    lanes, chunks = _epigenomics_shape(tasks)
    merged = [_lane(graph, lane, chunks) for lane in range(lanes)]
    final = graph.add_typed("mapMerge", _EPIGENOMICS["mapMerge"])
    for lane_merge in merged:
        graph.link(lane_merge, final, graph.size(_EPIGENOMICS["mapMerge"]))
    index = graph.add_typed("maqIndex", _EPIGENOMICS["maqIndex"])
    graph.link(final, index, graph.size(_EPIGENOMICS["mapMerge"]))
    pileup = graph.add_typed("pileup", _EPIGENOMICS["pileup"])
    graph.link(index, pileup, graph.size(_EPIGENOMICS["maqIndex"]))
    return _problem(graph, devices, seed)


def _lane(graph: _Graph, lane: int, chunks: int) -> str:
    """Add one sequencing lane's tasks; return its mapMerge."""
    split = graph.add_typed(f"fastqSplit-{lane}", _EPIGENOMICS["fastqSplit"])
    ends = []
    for chunk in range(chunks):
        head, kind = split, "fastqSplit"
        for stage in _LANE_STAGES:
            task = graph.add_typed(f"{stage}-{lane}-{chunk}", _EPIGENOMICS[stage])
            graph.link(head, task, graph.size(_EPIGENOMICS[kind]))
            head, kind = task, stage
        ends.append(head)
    merge = graph.add_typed(f"mapMerge-{lane}", _EPIGENOMICS["mapMerge"])
    for end in ends:
        graph.link(end, merge, graph.size(_EPIGENOMICS["map"]))
    return merge


# --- random layered DAG ------------------------------------------------------------------

_LAYERED_FLOPS: Range = (1e9, 1e11)
_LAYERED_MEMORY_MB: Range = (128, 2048)
_LAYERED_BYTES: Range = (1e4, 1e8)


def layered(tasks: int, devices: int, seed: int) -> ProblemDoc:
    """A random layered DAG of ``tasks`` tasks, ``t0``... in layer order.

    Layers hold about ``sqrt(tasks)`` tasks (half to one and a half times that). Each task
    past the first layer has 1-3 parents: one in the layer just before (so layers are real
    levels) and the others anywhere earlier.
    """
    if tasks < 1:
        raise ValueError(f"a workload needs at least one task, not {tasks}")
    graph = _Graph(_workload_rng(seed))
    rng = graph.rng
    ids: list[str] = []
    previous: list[str] = []
    for size in _layer_sizes(tasks, rng):
        layer = [
            graph.add(
                f"t{len(ids) + j}",
                flops=round(_draw_log(rng, _LAYERED_FLOPS)),
                memory_mb=round(_draw(rng, _LAYERED_MEMORY_MB)),
            )
            for j in range(size)
        ]
        # The previous layer first, then every earlier one: candidate parents by position.
        candidates = previous + ids[: len(ids) - len(previous)]
        for task in layer:
            for parent in _pick_parents(rng, len(previous), candidates):
                graph.link(parent, task, _draw_log(rng, _LAYERED_BYTES))
        ids.extend(layer)
        previous = layer
    return _problem(graph, devices, seed)


def _layer_sizes(tasks: int, rng: np.random.Generator) -> list[int]:
    width = max(1, round(math.sqrt(tasks)))
    sizes: list[int] = []
    while sum(sizes) < tasks:
        low, high = max(1, width // 2), max(1, (3 * width) // 2)
        sizes.append(min(int(rng.integers(low, high + 1)), tasks - sum(sizes)))
    return sizes


def _pick_parents(rng: np.random.Generator, n_previous: int, candidates: list[str]) -> list[str]:
    """Parents of one task: one from the previous layer, then up to two from any layer.

    The previous layer is the first ``n_previous`` candidates; the first layer has no
    previous layer, hence no parents.
    """
    if not n_previous:
        return []
    first = int(rng.integers(n_previous))
    extra = min(int(rng.integers(0, 3)), len(candidates) - 1)
    # Drawn among the other candidates: positions past ``first`` shift up by one.
    others = rng.choice(len(candidates) - 1, size=extra, replace=False)
    chosen = sorted(k + 1 if k >= first else k for k in map(int, others))
    return [candidates[first], *(candidates[k] for k in chosen)]


SHAPES: dict[str, Shape] = {
    "video-pipeline": _video_by_tasks,
    "montage": montage,
    "epigenomics": epigenomics,
    "layered": layered,
}
