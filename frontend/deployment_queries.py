"""Read-only queries behind the rollout pages (writes go through `deployments.actions`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet

from deployments.events import state_counts
from deployments.models import (
    Deployment,
    DeploymentTarget,
    InstalledModel,
    TargetState,
)
from devices.models import Device, DeviceStatus, Tier
from models_hub.models import Framework, ModelArtifact, Variant
from scheduling.models import Decision, DecisionStatus

LIST_LIMIT = 200
# A rollout page lists this many devices; its counts and phases cover them all.
TARGET_ROWS = 1000
# The order the count bars and their legends show the states in: done, in flight, waiting,
# then the rollback and the failures.
STATE_ORDER = [
    TargetState.ACTIVE,
    TargetState.VERIFYING,
    TargetState.DOWNLOADING,
    TargetState.ORDERED,
    TargetState.PENDING,
    TargetState.ROLLING_BACK,
    TargetState.ROLLED_BACK,
    TargetState.FAILED,
    TargetState.SKIPPED,
]
SETTLED = {TargetState.ACTIVE, TargetState.FAILED, TargetState.ROLLED_BACK}
NOT_RELEASED = {TargetState.PENDING, TargetState.SKIPPED}


# --- counts -----------------------------------------------------------------------------
@dataclass
class StateCount:
    state: str
    label: str
    count: int
    width: str  # its share of all the targets, as a CSS width


@dataclass
class StateBar:
    """A rollout's (or a phase's) devices per state, for the compact bar and its legend."""

    count_of: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.count_of.values())

    @property
    def segments(self) -> list[StateCount]:
        """The states that have devices, in the bar's order."""
        labels = dict(TargetState.choices)
        return [
            StateCount(state, labels[state], count, f"{100 * count / self.total:.2f}%")
            for state in STATE_ORDER
            if (count := self.count_of.get(state, 0))
        ]

    @property
    def text(self) -> str:
        """The bar in words: "3 active, 1 downloading, 2 pending"."""
        return ", ".join(f"{s.count} {s.label.lower()}" for s in self.segments) or "no devices"


# --- the list ---------------------------------------------------------------------------
@dataclass
class DeploymentRow:
    """A deployment as the list shows it: with its count per state, for the bar."""

    deployment: Deployment
    count_of: dict[str, int]

    @property
    def bar(self) -> StateBar:
        return StateBar(self.count_of)


def deployment_rows() -> list[DeploymentRow]:
    """The newest deployments with their counts per state (one query)."""
    per_state = {
        f"n_{state}": Count("targets", filter=Q(targets__state=state)) for state in STATE_ORDER
    }
    rows = (
        Deployment.objects.select_related("model", "variant", "created_by")
        .annotate(**per_state)
        .order_by("-created_at")[:LIST_LIMIT]  # an aggregate drops Meta.ordering
    )
    return [
        DeploymentRow(row, {state: getattr(row, f"n_{state}") for state in STATE_ORDER})
        for row in rows
    ]


# --- a rollout --------------------------------------------------------------------------
def phase_label(deployment: Deployment, phase: int) -> str:
    """Phase 0 is the canary when the rollout has one; the others are numbered batches."""
    if deployment.canary_percent:
        return "Canary" if phase == 0 else f"Batch {phase}"
    return f"Batch {phase + 1}"


@dataclass
class PhaseRow:
    """One phase of a rollout: how many devices it holds, released and settled."""

    phase: int
    label: str
    size: int = 0
    released: int = 0
    settled: int = 0
    states: Counter[str] = field(default_factory=Counter)

    @property
    def bar(self) -> StateBar:
        return StateBar(dict(self.states))

    @property
    def settled_percent(self) -> float:
        return 100 * self.settled / self.size if self.size else 0.0


def phase_rows(deployment: Deployment) -> list[PhaseRow]:
    phases = {
        phase: PhaseRow(phase, phase_label(deployment, phase))
        for phase in range(deployment.phase_count)
    }
    rows = deployment.targets.values_list("phase", "state").annotate(n=Count("pk"))
    for phase, state, count in rows:
        row = phases.setdefault(phase, PhaseRow(phase, phase_label(deployment, phase)))
        row.size += count
        row.states[state] += count
        if state not in NOT_RELEASED:
            row.released += count
        if state in SETTLED:
            row.settled += count
    return [phases[phase] for phase in sorted(phases)]


def target_rows(deployment: Deployment) -> QuerySet[DeploymentTarget]:
    return deployment.targets.select_related("device").order_by("phase", "device__name")[
        :TARGET_ROWS
    ]


@dataclass
class Rollout:
    """What the rollout page shows, besides the deployment itself."""

    bar: StateBar
    count_of: dict[str, int]
    phases: list[PhaseRow]
    phase_labels: dict[int, str]
    targets: list[DeploymentTarget]

    @property
    def target_count(self) -> int:
        return self.bar.total

    @property
    def targets_cut(self) -> bool:
        return self.target_count > len(self.targets)


def rollout(deployment: Deployment) -> Rollout:
    counts = state_counts(deployment)
    phases = phase_rows(deployment)
    return Rollout(
        bar=StateBar(counts),
        count_of=counts,
        phases=phases,
        phase_labels={row.phase: row.label for row in phases},
        targets=list(target_rows(deployment)),
    )


def target_spec_text(deployment: Deployment) -> str:
    """The operator's selector in words, as the rollout page's facts show it."""
    spec: dict[str, Any] = deployment.target_spec or {}
    if "tier" in spec:
        return f"every {spec['tier']} device"
    if "labels" in spec:
        return "labels " + ", ".join(f"{k}={v}" for k, v in spec["labels"].items())
    if "decision" in spec:
        tasks = spec.get("tasks") or []
        which = f"tasks {', '.join(tasks)}" if tasks else "every task"
        return f"decision {str(spec['decision'])[:8]}, {which}"
    devices = spec.get("devices") or []
    return f"{len(devices)} chosen device{'s' if len(devices) != 1 else ''}"


# --- the form's choices -----------------------------------------------------------------
def onnx_models() -> QuerySet[ModelArtifact]:
    return ModelArtifact.objects.filter(framework=Framework.ONNX).order_by("name", "-created_at")


def variants() -> QuerySet[Variant]:
    return (
        Variant.objects.select_related("model", "job")
        .defer("job__log", "job__report")
        .order_by("model__name", "-model__created_at", "-job__created_at", "index")
    )


def deployable_devices() -> QuerySet[Device]:
    return Device.objects.exclude(status=DeviceStatus.RETIRED).order_by("tier", "name")


def approved_decisions() -> QuerySet[Decision]:
    return (
        Decision.objects.filter(status=DecisionStatus.APPROVED)
        .select_related("job__workload", "solution")
        .defer("job__workload__document", "solution__timeline")
        .order_by("-reviewed_at")
    )


def tier_counts() -> dict[str, int]:
    """Non-retired devices per tier, for the tier choice's labels."""
    counts = dict(deployable_devices().order_by().values_list("tier").annotate(n=Count("pk")))
    return {tier: counts.get(tier, 0) for tier in Tier.values}


# --- a device ---------------------------------------------------------------------------
@dataclass
class ActiveModel:
    """What a device's agent says it serves, with the manifest's names when we signed it."""

    installed: InstalledModel
    model: dict[str, Any] | None  # the manifest's `model`: id, name, version, variant...

    @property
    def serves_nothing(self) -> bool:
        return not self.installed.sha256


def active_model(device: Device) -> ActiveModel | None:
    installed = InstalledModel.objects.select_related("manifest").filter(device=device).first()
    if installed is None:
        return None
    signed = installed.manifest.signed if installed.manifest else {}
    return ActiveModel(installed, signed.get("model") if isinstance(signed, dict) else None)


def device_rollouts(device: Device, limit: int = 50) -> QuerySet[DeploymentTarget]:
    """The device's part in each deployment, newest deployment first."""
    return (
        DeploymentTarget.objects.filter(device=device)
        .select_related("deployment__model", "deployment__variant")
        .order_by("-deployment__created_at")[:limit]
    )
