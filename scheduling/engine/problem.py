"""The scheduling problem: parsing and validating the JSON document, and its array form.

`parse_problem` turns a document (docs/scheduling-format.md) into a `Problem` or raises
`ProblemError` naming the task, edge or device at fault. `Problem.arrays` is the numeric
form the decoder and the baselines work on, built once per problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "triad-scheduling/1"
TIERS = ("cloud", "edge", "end")
OBJECTIVES = ("makespan", "energy", "cost", "bandwidth")
DEFAULT_OBJECTIVES = ("makespan", "energy")
# Ids are labels for people and charts, not documents.
MAX_ID_CHARS = 200


@dataclass(frozen=True)
class LinkSpec:
    bandwidth_mbps: float
    latency_ms: float
    energy_j_per_mb: float = 0.0


# Built-in tier-pair links, used when the problem names none for a pair of devices.
DEFAULT_TIER_LINKS: dict[frozenset[str], LinkSpec] = {
    frozenset({"cloud"}): LinkSpec(10000, 1, 0.05),
    frozenset({"cloud", "edge"}): LinkSpec(1000, 20, 0.2),
    frozenset({"cloud", "end"}): LinkSpec(50, 40, 1.0),
    frozenset({"edge"}): LinkSpec(1000, 2, 0.1),
    frozenset({"edge", "end"}): LinkSpec(100, 5, 0.5),
    frozenset({"end"}): LinkSpec(50, 10, 0.8),
}


class ProblemError(ValueError):
    """A problem the engine refuses; `field` is the path of the input at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Task:
    id: str
    flops: float
    memory_mb: float
    pinned_to: str | None = None
    deadline_s: float | None = None
    runtime_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    bytes: float


@dataclass(frozen=True)
class Device:
    id: str
    tier: str
    gflops: float
    memory_mb: float
    power_idle_w: float
    power_busy_w: float
    cost_per_hour: float = 0.0
    name: str = ""


@dataclass(frozen=True)
class Link:
    src: str
    dst: str
    spec: LinkSpec


@dataclass(frozen=True)
class ProblemArrays:
    """The problem as arrays, indexed by task and device position.

    Predecessors are in CSR form: the inputs of task t are `pred_task[pred_ptr[t]:pred_ptr[t+1]]`
    with `pred_bytes` alongside; successors likewise.
    """

    compute_s: npt.NDArray[np.float64]  # (tasks, devices)
    allowed: npt.NDArray[np.bool_]  # (tasks, devices): memory and pinning
    pred_ptr: npt.NDArray[np.int64]
    pred_task: npt.NDArray[np.int64]
    pred_bytes: npt.NDArray[np.float64]
    succ_ptr: npt.NDArray[np.int64]
    succ_task: npt.NDArray[np.int64]
    succ_bytes: npt.NDArray[np.float64]
    latency_s: npt.NDArray[np.float64]  # (devices, devices), 0 on the diagonal
    bytes_per_s: npt.NDArray[np.float64]  # (devices, devices), inf on the diagonal
    energy_j_per_byte: npt.NDArray[np.float64]  # (devices, devices), 0 on the diagonal
    gflops: npt.NDArray[np.float64]
    power_idle_w: npt.NDArray[np.float64]
    power_busy_w: npt.NDArray[np.float64]
    price_per_s: npt.NDArray[np.float64]
    deadline_s: npt.NDArray[np.float64]  # inf where a task has none
    tier_index: npt.NDArray[np.int64]  # position in TIERS
    pinned: npt.NDArray[np.bool_]

    @property
    def n_tasks(self) -> int:
        return int(self.compute_s.shape[0])

    @property
    def n_devices(self) -> int:
        return int(self.compute_s.shape[1])


@dataclass(frozen=True)
class Problem:
    tasks: tuple[Task, ...]
    edges: tuple[Edge, ...]
    devices: tuple[Device, ...]
    links: tuple[Link, ...]
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES

    def with_objectives(self, objectives: Sequence[str]) -> Problem:
        return Problem(
            self.tasks, self.edges, self.devices, self.links, _objectives(list(objectives))
        )

    @cached_property
    def arrays(self) -> ProblemArrays:
        return _build_arrays(self)

    def link_between(self, a: Device, b: Device) -> LinkSpec:
        """The most specific link: device pair, then device and tier, then tier pair."""
        table = self._link_table
        for key in (
            frozenset({a.id, b.id}) if a.id != b.id else None,
            frozenset({a.id, f"tier:{b.tier}"}),
            frozenset({f"tier:{a.tier}", b.id}),
            frozenset({f"tier:{a.tier}", f"tier:{b.tier}"}),
        ):
            if key is not None and key in table:
                return table[key]
        return DEFAULT_TIER_LINKS[frozenset({a.tier, b.tier})]

    @cached_property
    def _link_table(self) -> dict[frozenset[str], LinkSpec]:
        def endpoint(name: str) -> str:
            return f"tier:{name}" if name in TIERS else name

        return {frozenset({endpoint(k.src), endpoint(k.dst)}): k.spec for k in self.links}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tasks": [_task_json(t) for t in self.tasks],
            "edges": [{"from": e.src, "to": e.dst, "bytes": e.bytes} for e in self.edges],
            "devices": [_device_json(d) for d in self.devices],
            "links": [
                {
                    "from": k.src,
                    "to": k.dst,
                    "bandwidth_mbps": k.spec.bandwidth_mbps,
                    "latency_ms": k.spec.latency_ms,
                    "energy_j_per_mb": k.spec.energy_j_per_mb,
                }
                for k in self.links
            ],
            "objectives": list(self.objectives),
        }


def _task_json(task: Task) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": task.id, "flops": task.flops, "memory_mb": task.memory_mb}
    if task.pinned_to is not None:
        doc["pinned_to"] = task.pinned_to
    if task.deadline_s is not None:
        doc["deadline_s"] = task.deadline_s
    if task.runtime_s:
        doc["runtime_s"] = dict(task.runtime_s)
    return doc


def _device_json(device: Device) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": device.id,
        "tier": device.tier,
        "gflops": device.gflops,
        "memory_mb": device.memory_mb,
        "power_idle_w": device.power_idle_w,
        "power_busy_w": device.power_busy_w,
        "cost_per_hour": device.cost_per_hour,
    }
    if device.name:
        doc["name"] = device.name
    return doc


# ---------------------------------------------------------------------------------------
# Parsing


def parse_problem(doc: Any) -> Problem:
    """Validate a problem document and return the `Problem`; raise `ProblemError` if bad."""
    if not isinstance(doc, Mapping):
        raise ProblemError("must be a JSON object")
    if doc.get("format", FORMAT) != FORMAT:
        raise ProblemError(f"unsupported format; expected {FORMAT!r}", "format")
    tasks, edges = parse_workload(doc)
    devices = _parse_devices(doc.get("devices"))
    links = _parse_links(doc.get("links", []), {d.id for d in devices})
    objectives = _objectives(doc.get("objectives", list(DEFAULT_OBJECTIVES)))
    problem = Problem(tasks, edges, devices, links, objectives)
    _check_placement(problem)
    return problem


def parse_workload(doc: Mapping[str, Any]) -> tuple[tuple[Task, ...], tuple[Edge, ...]]:
    """Validate the task graph alone (`tasks` and `edges`): ids, sizes, references, cycles."""
    raw_tasks = _list(doc.get("tasks"), "tasks")
    if not raw_tasks:
        raise ProblemError("the workload has no tasks", "tasks")
    tasks = tuple(_parse_task(raw, f"tasks[{i}]") for i, raw in enumerate(raw_tasks))
    _unique([t.id for t in tasks], "tasks", "task")
    ids = {t.id for t in tasks}
    edges = tuple(
        _parse_edge(raw, f"edges[{i}]", ids)
        for i, raw in enumerate(_list(doc.get("edges", []), "edges"))
    )
    seen: set[tuple[str, str]] = set()
    for i, edge in enumerate(edges):
        if (edge.src, edge.dst) in seen:
            raise ProblemError(
                f"duplicate edge from task {edge.src!r} to task {edge.dst!r}", f"edges[{i}]"
            )
        seen.add((edge.src, edge.dst))
    _check_acyclic(tasks, edges)
    return tasks, edges


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        raise ProblemError("this field is required", path)
    if not isinstance(value, list):
        raise ProblemError("must be a list", path)
    return value


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProblemError("must be an object", path)
    return value


def _identifier(raw: Mapping[str, Any], key: str, path: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProblemError("must be a non-empty string", f"{path}.{key}")
    if len(value) > MAX_ID_CHARS:
        raise ProblemError(f"must be at most {MAX_ID_CHARS} characters", f"{path}.{key}")
    return value


def _number(
    raw: Mapping[str, Any],
    key: str,
    path: str,
    what: str,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    default: float | None = None,
) -> float:
    value = raw.get(key, default)
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        problem = "is required" if value is None else f"must be a number {bound}"
        raise ProblemError(f"{problem} ({what})", f"{path}.{key}")
    return float(value)  # type: ignore[arg-type]


def _parse_task(raw: Any, path: str) -> Task:
    raw = _object(raw, path)
    task_id = _identifier(raw, "id", path)
    what = f"task {task_id!r}"
    pinned = raw.get("pinned_to")
    if pinned is not None and (not isinstance(pinned, str) or not pinned):
        raise ProblemError(f"must be a device id or a tier ({what})", f"{path}.pinned_to")
    deadline = None
    if raw.get("deadline_s") is not None:
        deadline = _number(raw, "deadline_s", path, what, strict=True)
    runtime = raw.get("runtime_s", {})
    if not isinstance(runtime, Mapping):
        raise ProblemError(f"must map device ids to seconds ({what})", f"{path}.runtime_s")
    runtimes = {
        str(device): _number(runtime, str(device), f"{path}.runtime_s", what, strict=True)
        for device in runtime
    }
    return Task(
        id=task_id,
        flops=_number(raw, "flops", path, what, strict=True),
        memory_mb=_number(raw, "memory_mb", path, what),
        pinned_to=pinned,
        deadline_s=deadline,
        runtime_s=runtimes,
    )


def _parse_edge(raw: Any, path: str, task_ids: set[str]) -> Edge:
    raw = _object(raw, path)
    src = _identifier(raw, "from", path)
    dst = _identifier(raw, "to", path)
    for key, value in (("from", src), ("to", dst)):
        if value not in task_ids:
            raise ProblemError(f"unknown task {value!r}", f"{path}.{key}")
    if src == dst:
        raise ProblemError(f"task {src!r} cannot depend on itself", path)
    what = f"edge {src!r} -> {dst!r}"
    return Edge(src, dst, _number(raw, "bytes", path, what))


def _check_acyclic(tasks: Sequence[Task], edges: Sequence[Edge]) -> None:
    successors: dict[str, list[str]] = {t.id: [] for t in tasks}
    for edge in edges:
        successors[edge.src].append(edge.dst)
    # Iterative depth-first search; colour 1 is "on the current path".
    colour = dict.fromkeys(successors, 0)
    for root in successors:
        if colour[root]:
            continue
        path = [root]
        stack = [iter(successors[root])]
        colour[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour[nxt] == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise ProblemError("the graph has a cycle: " + " -> ".join(cycle), "edges")
            elif colour[nxt] == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(successors[nxt]))


def _parse_devices(value: Any) -> tuple[Device, ...]:
    raw_devices = _list(value, "devices")
    if not raw_devices:
        raise ProblemError("the fleet is empty: no device to schedule on", "devices")
    devices = tuple(_parse_device(raw, f"devices[{i}]") for i, raw in enumerate(raw_devices))
    _unique([d.id for d in devices], "devices", "device")
    return devices


def _parse_device(raw: Any, path: str) -> Device:
    raw = _object(raw, path)
    device_id = _identifier(raw, "id", path)
    what = f"device {device_id!r}"
    if device_id in TIERS:
        raise ProblemError(f"a device id cannot be a tier name ({what})", f"{path}.id")
    tier = raw.get("tier")
    if tier not in TIERS:
        raise ProblemError(f"must be one of {', '.join(TIERS)} ({what})", f"{path}.tier")
    idle = _number(raw, "power_idle_w", path, what)
    busy = _number(raw, "power_busy_w", path, what)
    if busy < idle:
        raise ProblemError(f"busy power is below idle power ({what})", f"{path}.power_busy_w")
    name = raw.get("name", "")
    return Device(
        id=device_id,
        tier=tier,
        gflops=_number(raw, "gflops", path, what, strict=True),
        memory_mb=_number(raw, "memory_mb", path, what, strict=True),
        power_idle_w=idle,
        power_busy_w=busy,
        cost_per_hour=_number(raw, "cost_per_hour", path, what, default=0.0),
        name=name if isinstance(name, str) else "",
    )


def _parse_links(value: Any, device_ids: set[str]) -> tuple[Link, ...]:
    links = []
    for i, raw in enumerate(_list(value, "links")):
        path = f"links[{i}]"
        raw = _object(raw, path)
        ends = [_identifier(raw, key, path) for key in ("from", "to")]
        for key, end in zip(("from", "to"), ends, strict=True):
            if end not in device_ids and end not in TIERS:
                raise ProblemError(f"unknown device or tier {end!r}", f"{path}.{key}")
        what = f"link {ends[0]!r} - {ends[1]!r}"
        spec = LinkSpec(
            _number(raw, "bandwidth_mbps", path, what, strict=True),
            _number(raw, "latency_ms", path, what),
            _number(raw, "energy_j_per_mb", path, what, default=0.0),
        )
        links.append(Link(ends[0], ends[1], spec))
    return tuple(links)


def _objectives(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ProblemError(f"must be a non-empty list of {', '.join(OBJECTIVES)}", "objectives")
    for name in value:
        if name not in OBJECTIVES:
            raise ProblemError(
                f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}", "objectives"
            )
    _unique(value, "objectives", "objective")
    return tuple(value)


def _unique(ids: Sequence[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(ids):
        if item in seen:
            raise ProblemError(f"duplicate {what} id {item!r}", f"{path}[{i}].id")
        seen.add(item)


def _check_placement(problem: Problem) -> None:
    device_ids = {d.id for d in problem.devices}
    for i, task in enumerate(problem.tasks):
        path = f"tasks[{i}]"
        if task.pinned_to is not None and task.pinned_to not in device_ids | set(TIERS):
            raise ProblemError(
                f"task {task.id!r} is pinned to unknown device or tier {task.pinned_to!r}",
                f"{path}.pinned_to",
            )
        for device in task.runtime_s:
            if device not in device_ids:
                raise ProblemError(
                    f"unknown device {device!r} (task {task.id!r})", f"{path}.runtime_s"
                )
    allowed = problem.arrays.allowed
    for i, task in enumerate(problem.tasks):
        if not allowed[i].any():
            where = f"pinned to {task.pinned_to!r}" if task.pinned_to else "in the fleet"
            raise ProblemError(
                f"no device {where} has the {task.memory_mb:g} MB task {task.id!r} needs",
                f"tasks[{i}].memory_mb",
            )


# ---------------------------------------------------------------------------------------
# Arrays


def _build_arrays(problem: Problem) -> ProblemArrays:
    tasks, devices = problem.tasks, problem.devices
    index = {t.id: i for i, t in enumerate(tasks)}
    gflops = np.array([d.gflops for d in devices])
    compute = np.array([t.flops for t in tasks])[:, None] / (gflops[None, :] * 1e9)
    device_index = {d.id: j for j, d in enumerate(devices)}
    for i, task in enumerate(tasks):
        for device_id, seconds in task.runtime_s.items():
            if device_id in device_index:
                compute[i, device_index[device_id]] = seconds
    pred = _csr(len(tasks), [(index[e.dst], index[e.src], e.bytes) for e in problem.edges])
    succ = _csr(len(tasks), [(index[e.src], index[e.dst], e.bytes) for e in problem.edges])
    latency, bandwidth, energy = _link_matrices(problem)
    return ProblemArrays(
        compute_s=compute,
        allowed=_allowed(tasks, devices),
        pred_ptr=pred[0],
        pred_task=pred[1],
        pred_bytes=pred[2],
        succ_ptr=succ[0],
        succ_task=succ[1],
        succ_bytes=succ[2],
        latency_s=latency,
        bytes_per_s=bandwidth,
        energy_j_per_byte=energy,
        gflops=gflops,
        power_idle_w=np.array([d.power_idle_w for d in devices]),
        power_busy_w=np.array([d.power_busy_w for d in devices]),
        price_per_s=np.array([d.cost_per_hour / 3600.0 for d in devices]),
        deadline_s=np.array([np.inf if t.deadline_s is None else t.deadline_s for t in tasks]),
        tier_index=np.array([TIERS.index(d.tier) for d in devices], dtype=np.int64),
        pinned=np.array([t.pinned_to is not None for t in tasks]),
    )


def _csr(
    n: int, rows: list[tuple[int, int, float]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    rows.sort(key=lambda row: (row[0], row[1]))
    counts = np.bincount(np.array([r[0] for r in rows], dtype=np.int64), minlength=n)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    other = np.array([r[1] for r in rows], dtype=np.int64)
    weight = np.array([r[2] for r in rows], dtype=np.float64)
    return ptr, other, weight


def _allowed(tasks: Sequence[Task], devices: Sequence[Device]) -> npt.NDArray[np.bool_]:
    memory = np.array([d.memory_mb for d in devices])
    allowed = np.array([t.memory_mb for t in tasks])[:, None] <= memory[None, :]
    for i, task in enumerate(tasks):
        if task.pinned_to is not None:
            allowed[i] &= np.array([task.pinned_to in (d.id, d.tier) for d in devices])
    return allowed


def _link_matrices(
    problem: Problem,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    m = len(problem.devices)
    latency = np.zeros((m, m))
    bandwidth = np.full((m, m), np.inf)
    energy = np.zeros((m, m))
    for a, dev_a in enumerate(problem.devices):
        for b in range(a + 1, m):
            spec = problem.link_between(dev_a, problem.devices[b])
            latency[a, b] = latency[b, a] = spec.latency_ms / 1000.0
            bandwidth[a, b] = bandwidth[b, a] = spec.bandwidth_mbps * 1e6 / 8.0
            energy[a, b] = energy[b, a] = spec.energy_j_per_mb / 1e6
    return latency, bandwidth, energy
