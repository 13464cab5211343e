"""Workload templates: named, parameterised task graphs built by the engine's generators.

Not Django templates. A template builds only the workload (`tasks` and `edges`); the fleet
is the live one each job snapshots, so the generators' made-up devices are dropped and any
pin to one of them becomes a pin to that device's tier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduling.engine import TIERS, generate

# Fleet size handed to the generators. Only its shape matters (the video pipeline needs end
# devices to pin its cameras' decoders to); the devices themselves are discarded.
_GENERATOR_FLEET = 10
MAX_SEED = 2**31 - 1


class TemplateError(ValueError):
    """Bad template parameters; `parameter` names the one at fault."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


@dataclass(frozen=True)
class TemplateParameter:
    name: str
    description: str
    minimum: int
    maximum: int
    default: int

    def read(self, raw: Any) -> int:
        if raw is None:
            return self.default
        if (
            isinstance(raw, bool)
            or not isinstance(raw, int | float)
            or not math.isfinite(raw)
            or raw != int(raw)
        ):
            raise TemplateError(f"{self.name} must be an integer.", self.name)
        if not self.minimum <= raw <= self.maximum:
            raise TemplateError(
                f"{self.name} must be from {self.minimum} to {self.maximum}, not {raw:g}.",
                self.name,
            )
        return int(raw)


SEED = TemplateParameter("seed", "Seed of the random sizes: the same seed, the same graph.",
                         0, MAX_SEED, 1)  # fmt: skip


@dataclass(frozen=True)
class WorkloadTemplate:
    name: str
    title: str
    description: str
    parameters: tuple[TemplateParameter, ...]
    generator: Callable[..., dict[str, Any]]

    def build(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """The workload document for these parameters; `TemplateError` names a bad one."""
        return detach_from_fleet(self.generator(**self.read_parameters(parameters)))

    def read_parameters(self, parameters: Mapping[str, Any]) -> dict[str, int]:
        if not isinstance(parameters, Mapping):
            raise TemplateError("Parameters must be an object.")
        known = {p.name for p in self.parameters}
        for name in parameters:
            if name not in known:
                raise TemplateError(
                    f"{name} is not a parameter of {self.name}; it takes "
                    f"{', '.join(sorted(known))}.",
                    name,
                )
        return {p.name: p.read(parameters.get(p.name)) for p in self.parameters}


def _video_pipeline(cameras: int, seed: int) -> dict[str, Any]:
    return generate.video_pipeline(cameras, _GENERATOR_FLEET, seed)


def _by_task_count(shape: Callable[[int, int, int], dict[str, Any]]) -> Callable[..., Any]:
    def generator(tasks: int, seed: int) -> dict[str, Any]:
        return shape(tasks, _GENERATOR_FLEET, seed)

    return generator


def _task_count(default: int) -> TemplateParameter:
    return TemplateParameter("tasks", "About how many tasks.", 10, 2000, default)


TEMPLATES: dict[str, WorkloadTemplate] = {
    template.name: template
    for template in (
        WorkloadTemplate(
            "video-pipeline",
            "City video analytics",
            "Per camera: decode (on the camera, an end device), detect, track and "
            "re-identify; then one cross-camera aggregate and an alert.",
            (TemplateParameter("cameras", "Number of cameras.", 1, 500, 20), SEED),
            _video_pipeline,
        ),
        WorkloadTemplate(
            "montage",
            "Montage astronomy mosaic",
            "The Pegasus Montage workflow: project images, fit their overlaps, correct "
            "backgrounds and add them into one mosaic.",
            (_task_count(100), SEED),
            _by_task_count(generate.montage),
        ),
        WorkloadTemplate(
            "epigenomics",
            "Epigenomics sequence mapping",
            "The Pegasus Epigenomics workflow: split, filter, convert and map sequence "
            "chunks per lane, then merge, index and pile up.",
            (_task_count(100), SEED),
            _by_task_count(generate.epigenomics),
        ),
        WorkloadTemplate(
            "layered",
            "Random layered graph",
            "A random layered DAG with one to three parents per task.",
            (_task_count(50), SEED),
            _by_task_count(generate.layered),
        ),
    )
}


def get_template(name: str) -> WorkloadTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TemplateError(
            f"Unknown template {name!r}; choose from {', '.join(TEMPLATES)}."
        ) from None


def detach_from_fleet(problem: Mapping[str, Any]) -> dict[str, Any]:
    """The workload of a problem document, freed from the document's own fleet.

    A task pinned to one of the document's devices is pinned to that device's tier instead,
    and per-device runtimes are dropped: the job runs on the live fleet, whose devices are
    others. Without devices in the document, pins and runtimes stay as they are: they may
    name live devices.
    """
    tasks = problem.get("tasks")
    devices = problem.get("devices")
    workload = {"tasks": tasks, "edges": problem.get("edges", [])}
    if not isinstance(devices, list) or not isinstance(tasks, list):
        return workload
    tiers: dict[str, Any] = {
        d["id"]: d.get("tier")
        for d in devices
        if isinstance(d, Mapping) and isinstance(d.get("id"), str)
    }
    workload["tasks"] = [_detach_task(task, tiers) for task in tasks]
    return workload


def _detach_task(task: Any, tiers: Mapping[str, Any]) -> Any:
    if not isinstance(task, Mapping):
        return task  # the workload parser reports it
    detached = {key: value for key, value in task.items() if key != "runtime_s"}
    pinned = task.get("pinned_to")
    # A pin to a device of the file becomes a pin to its tier; without a valid tier the pin
    # stays as it is, and the workload check refuses it as an unknown device.
    if isinstance(pinned, str) and tiers.get(pinned) in TIERS:
        detached["pinned_to"] = tiers[pinned]
    return detached
