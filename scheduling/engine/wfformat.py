"""Import WfCommons WfFormat workflow instances as a scheduling workload.

WfFormat (https://github.com/wfcommons/WfFormat) is the JSON format of the WfCommons
project's workflow execution traces (Montage, Epigenomics, BLAST, ...). Two layouts exist:

- **1.5 and later**: ``workflow.specification.tasks[]`` (``id``, ``parents``, ``children``,
  ``inputFiles``, ``outputFiles``), ``workflow.specification.files[]`` (``id``,
  ``sizeInBytes``) and ``workflow.execution.tasks[]`` (``id``, ``runtimeInSeconds``,
  optional ``memoryInBytes``).
- **1.3 and 1.4** (and the 1.0-1.2 ``jobs`` spelling): ``workflow.tasks[]`` with ``name``
  and/or ``id``, ``runtime`` or ``runtimeInSeconds``, ``parents`` (and optionally
  ``children``) naming other tasks, and ``files[]`` whose ``link`` is ``input`` or
  ``output``, with ``name`` (prefixed by ``path`` when given) and ``size`` or
  ``sizeInBytes``; memory is ``memoryInBytes`` or the 1.3 ``memory`` in kilobytes.

:func:`workload_from_wfformat` turns either into the ``tasks`` and ``edges`` of a problem
document (docs/scheduling-format.md):

- ``flops = runtime_s * REFERENCE_GFLOPS * 1e9``: traces record seconds on the machine that
  ran them, not operations, so we assume that machine sustained ``REFERENCE_GFLOPS``.
- A runtime of 0 (traces round short tasks down) becomes ``MIN_FLOPS``, because the problem
  format needs ``flops > 0``; such a task still takes no measurable time.
- ``memory_mb`` is the recorded resident memory in mebibytes (2**20 bytes, the unit of the
  fleet's device memory), rounded up; ``DEFAULT_MEMORY_MB`` when the trace has none.
- An edge joins each parent to its child, in either direction the trace declares it; its
  ``bytes`` is the total size of the files that the parent writes and the child reads, 0
  when they share none.

Cycles are left to the problem parser, which reports them with the cycle spelled out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

REFERENCE_GFLOPS = 10.0
"""Speed (GFLOP/s) assumed for the machine whose runtimes a trace records."""

MIN_FLOPS = 1.0
"""Flops given to a task whose recorded runtime is 0."""

DEFAULT_MEMORY_MB = 512.0
"""Memory given to a task whose trace records none."""

_MIB = 2**20
# WfFormat 1.3 records memory in kilobytes; its own 1.3-to-1.4 migration multiplies by 1000.
_KB = 1000


class WfFormatError(ValueError):
    """A WfFormat document that cannot be imported; ``field`` is the JSON path at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.message = message
        self.field = field


@dataclass
class _Task:
    """One task, read from either schema layout into the same shape."""

    id: str
    where: str
    runtime_s: float = 0.0
    memory_bytes: float | None = None
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class _Workflow:
    tasks: list[_Task]
    file_sizes: dict[str, int]


def is_wfformat(doc: Any) -> bool:
    """Whether ``doc`` looks like a WfFormat instance of any supported version."""
    if not isinstance(doc, dict):
        return False
    workflow = doc.get("workflow")
    if not isinstance(workflow, dict):
        return False
    return isinstance(workflow.get("specification"), dict) or any(
        isinstance(workflow.get(key), list) for key in ("tasks", "jobs")
    )


def workload_from_wfformat(doc: Any) -> dict[str, list[dict[str, Any]]]:
    """Return ``{"tasks": [...], "edges": [...]}`` for a WfFormat document.

    Raises :class:`WfFormatError` naming the field (and the task) at fault.
    """
    if not is_wfformat(doc):
        raise WfFormatError(
            "not a WfFormat workflow: expected workflow.specification (1.5+) "
            "or workflow.tasks (1.3/1.4)",
            "workflow",
        )
    workflow = doc["workflow"]
    parsed = _read_current(workflow) if "specification" in workflow else _read_legacy(workflow)
    _link_both_ways(parsed.tasks)
    return {
        "tasks": [_problem_task(task) for task in parsed.tasks],
        "edges": _edges(parsed),
    }


# --- 1.5+ layout ---------------------------------------------------------------------------


def _read_current(workflow: dict[str, Any]) -> _Workflow:
    spec = workflow["specification"]
    raw_tasks = _task_list(spec.get("tasks"), "workflow.specification.tasks")
    tasks: list[_Task] = []
    for index, raw in enumerate(raw_tasks):
        where = f"workflow.specification.tasks[{index}]"
        raw = _object(raw, where)
        task = _Task(id=_string(raw.get("id"), f"{where}.id"), where=where)
        task.parents = _strings(raw.get("parents", []), f"{where}.parents", task.id)
        task.children = _strings(raw.get("children", []), f"{where}.children", task.id)
        task.inputs = _strings(raw.get("inputFiles", []), f"{where}.inputFiles", task.id)
        task.outputs = _strings(raw.get("outputFiles", []), f"{where}.outputFiles", task.id)
        tasks.append(task)
    by_id = _index(tasks)
    _read_execution(workflow.get("execution"), by_id)
    sizes: dict[str, int] = {}
    for index, raw in enumerate(_list(spec.get("files", []), "workflow.specification.files")):
        where = f"workflow.specification.files[{index}]"
        raw = _object(raw, where)
        file_id = _string(raw.get("id"), f"{where}.id")
        sizes[file_id] = _size(raw.get("sizeInBytes"), f"{where}.sizeInBytes", f'file "{file_id}"')
    for task in tasks:
        _check_files(task, "inputFiles", task.inputs, sizes)
        _check_files(task, "outputFiles", task.outputs, sizes)
    return _Workflow(tasks, sizes)


def _read_execution(execution: Any, by_id: dict[str, _Task]) -> None:
    """Fill in runtimes and memory from ``workflow.execution.tasks``."""
    # Without an execution section (a purely structural instance) no task has a runtime,
    # which the check at the end reports for the first task.
    entries: list[Any] = []
    if execution is not None:
        raw = _object(execution, "workflow.execution")
        entries = _list(raw.get("tasks"), "workflow.execution.tasks")
    seen: set[str] = set()
    for index, raw in enumerate(entries):
        where = f"workflow.execution.tasks[{index}]"
        raw = _object(raw, where)
        task_id = _string(raw.get("id"), f"{where}.id")
        task = by_id.get(task_id)
        if task is None:
            raise WfFormatError(f'unknown task "{task_id}"', f"{where}.id")
        task.runtime_s = _runtime(raw.get("runtimeInSeconds"), f"{where}.runtimeInSeconds", task_id)
        if "memoryInBytes" in raw:
            task.memory_bytes = _nonnegative(
                raw["memoryInBytes"], f"{where}.memoryInBytes", f'task "{task_id}"'
            )
        seen.add(task_id)
    for task_id in by_id:
        if task_id not in seen:
            raise WfFormatError(
                f'no runtimeInSeconds for task "{task_id}"', "workflow.execution.tasks"
            )


# --- 1.3/1.4 layout ------------------------------------------------------------------------


def _read_legacy(workflow: dict[str, Any]) -> _Workflow:
    key = "tasks" if "tasks" in workflow else "jobs"
    raw_tasks = _task_list(workflow.get(key), f"workflow.{key}")
    tasks: list[_Task] = []
    sizes: dict[str, int] = {}
    for index, raw in enumerate(raw_tasks):
        where = f"workflow.{key}[{index}]"
        raw = _object(raw, where)
        # Up to 1.4, tasks refer to each other by name; "id" came later and is optional.
        name_key = "name" if "name" in raw else "id"
        task = _Task(id=_string(raw.get(name_key), f"{where}.{name_key}"), where=where)
        runtime_key = "runtimeInSeconds" if "runtimeInSeconds" in raw else "runtime"
        task.runtime_s = _runtime(raw.get(runtime_key), f"{where}.{runtime_key}", task.id)
        task.memory_bytes = _legacy_memory(raw, where, task.id)
        task.parents = _strings(raw.get("parents", []), f"{where}.parents", task.id)
        task.children = _strings(raw.get("children", []), f"{where}.children", task.id)
        _read_legacy_files(raw, where, task, sizes)
        tasks.append(task)
    _resolve_legacy_references(tasks, raw_tasks)
    return _Workflow(tasks, sizes)


def _legacy_memory(raw: dict[str, Any], where: str, task_id: str) -> float | None:
    if "memoryInBytes" in raw:
        return _nonnegative(raw["memoryInBytes"], f"{where}.memoryInBytes", f'task "{task_id}"')
    if "memory" in raw:
        return _nonnegative(raw["memory"], f"{where}.memory", f'task "{task_id}"') * _KB
    return None


def _read_legacy_files(raw: dict[str, Any], where: str, task: _Task, sizes: dict[str, int]) -> None:
    for index, raw_file in enumerate(_list(raw.get("files", []), f"{where}.files")):
        at = f"{where}.files[{index}]"
        raw_file = _object(raw_file, at)
        name = _string(raw_file.get("name"), f"{at}.name")
        # The 1.4-to-1.5 migration names a file by its path and name together.
        file_id = str(raw_file.get("path", "")) + name
        size_key = "sizeInBytes" if "sizeInBytes" in raw_file else "size"
        sizes[file_id] = _size(raw_file.get(size_key), f"{at}.{size_key}", f'task "{task.id}"')
        link = raw_file.get("link")
        if link == "input":
            task.inputs.append(file_id)
        elif link == "output":
            task.outputs.append(file_id)
        else:
            raise WfFormatError(
                f'must be "input" or "output", not {link!r} (task "{task.id}")', f"{at}.link"
            )


def _resolve_legacy_references(tasks: list[_Task], raw_tasks: list[Any]) -> None:
    """Map parent and child references, by name or by old ``id``, to task names."""
    by_id = _index(tasks)
    aliases = dict(by_id)
    for task, raw in zip(tasks, raw_tasks, strict=True):
        old_id = raw.get("id")
        if isinstance(old_id, str) and old_id not in aliases:
            aliases[old_id] = task
    for task in tasks:
        task.parents = [_resolve(aliases, ref, task, "parents") for ref in task.parents]
        task.children = [_resolve(aliases, ref, task, "children") for ref in task.children]


def _resolve(aliases: dict[str, _Task], ref: str, task: _Task, key: str) -> str:
    target = aliases.get(ref)
    if target is None:
        raise WfFormatError(f'unknown task "{ref}" (task "{task.id}")', f"{task.where}.{key}")
    return target.id


# --- shared conversion ---------------------------------------------------------------------


def _link_both_ways(tasks: list[_Task]) -> None:
    """Make ``parents`` complete: traces may declare a dependency on one end only."""
    by_id = {task.id: task for task in tasks}
    for task in tasks:
        for key, refs in (("parents", task.parents), ("children", task.children)):
            for ref in refs:
                if ref not in by_id:
                    raise WfFormatError(
                        f'unknown task "{ref}" (task "{task.id}")', f"{task.where}.{key}"
                    )
                if ref == task.id:
                    raise WfFormatError(
                        f'task "{task.id}" depends on itself', f"{task.where}.{key}"
                    )
    for task in tasks:
        for child in task.children:
            parents = by_id[child].parents
            if task.id not in parents:
                parents.append(task.id)


def _problem_task(task: _Task) -> dict[str, Any]:
    flops = task.runtime_s * REFERENCE_GFLOPS * 1e9
    memory_mb = (
        DEFAULT_MEMORY_MB if task.memory_bytes is None else math.ceil(task.memory_bytes / _MIB)
    )
    return {"id": task.id, "flops": max(flops, MIN_FLOPS), "memory_mb": float(memory_mb)}


def _edges(workflow: _Workflow) -> list[dict[str, Any]]:
    by_id = {task.id: task for task in workflow.tasks}
    edges: list[dict[str, Any]] = []
    for child in workflow.tasks:
        reads = set(child.inputs)
        for parent_id in dict.fromkeys(child.parents):
            shared = reads.intersection(by_id[parent_id].outputs)
            size = sum(workflow.file_sizes[name] for name in shared)
            edges.append({"from": parent_id, "to": child.id, "bytes": size})
    return edges


def _index(tasks: list[_Task]) -> dict[str, _Task]:
    by_id: dict[str, _Task] = {}
    for task in tasks:
        if task.id in by_id:
            raise WfFormatError(f'duplicate task "{task.id}"', task.where)
        by_id[task.id] = task
    return by_id


def _check_files(task: _Task, key: str, names: Iterable[str], sizes: dict[str, int]) -> None:
    for name in names:
        if name not in sizes:
            raise WfFormatError(
                f'unknown file "{name}" (task "{task.id}"): not in workflow.specification.files',
                f"{task.where}.{key}",
            )


# --- value checks --------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WfFormatError("must be an object", where)
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise WfFormatError("must be a list", where)
    return value


def _task_list(value: Any, where: str) -> list[Any]:
    tasks = _list(value, where)
    if not tasks:
        raise WfFormatError("must list at least one task", where)
    return tasks


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise WfFormatError("must be a non-empty string", where)
    return value


def _strings(value: Any, where: str, task_id: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise WfFormatError(f'must be a list of non-empty strings (task "{task_id}")', where)
    return value


def _nonnegative(value: Any, where: str, owner: str) -> float:
    # bool is an int subclass; a true/false size is a mistake, not 1 or 0.
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise WfFormatError(f"must be a finite number >= 0 ({owner})", where)
    return float(value)


def _runtime(value: Any, where: str, task_id: str) -> float:
    if value is None:
        raise WfFormatError(f'missing runtime (task "{task_id}")', where)
    return _nonnegative(value, where, f'task "{task_id}"')


def _size(value: Any, where: str, owner: str) -> int:
    if value is None:
        raise WfFormatError(f"missing file size ({owner})", where)
    return math.ceil(_nonnegative(value, where, owner))
