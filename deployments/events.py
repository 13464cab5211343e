"""Live events of rollouts, sent through the channel layer after commit.

Groups and messages (the `type` is the consumer's handler name, dots for underscores):

- `deployment.<uuid>`, a rollout's page: `{"type": "deployment.status", "deployment":
  <summary>}` whenever its status, phase or counts change, and `{"type":
  "deployment.targets", "targets": [<target summary>, ...]}` whenever devices change state
  (download progress included).
- `deployments`, the list of rollouts: every `deployment.status`.

Agents are nudged through `devices.events.nudge_agents`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db.models import Count

from controlplane.events import send_to_groups
from deployments.models import Deployment, DeploymentTarget, TargetState
from devices.events import nudge_agents

__all__ = ["nudge_agents", "publish_deployment", "publish_targets"]

DEPLOYMENTS_GROUP = "deployments"
STATUS_EVENT = "deployment.status"
TARGETS_EVENT = "deployment.targets"


def deployment_group(deployment_id: object) -> str:
    return f"deployment.{deployment_id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def state_counts(deployment: Deployment) -> dict[str, int]:
    """Devices per target state, every state named (0 for none)."""
    counts = dict(
        deployment.targets.values_list("state").annotate(n=Count("pk")).values_list("state", "n")
    )
    return {state: counts.get(state, 0) for state in TargetState.values}


def deployment_summary(deployment: Deployment) -> dict[str, Any]:
    counts = state_counts(deployment)
    return {
        "id": str(deployment.id),
        "name": deployment.name,
        "status": deployment.status,
        "phase": deployment.phase,
        "phase_count": deployment.phase_count,
        "ended_reason": deployment.ended_reason,
        "counts": counts,
        "targets": sum(counts.values()),
        "created_at": _iso(deployment.created_at),
        "finished_at": _iso(deployment.finished_at),
    }


def target_summary(target: DeploymentTarget) -> dict[str, Any]:
    return {
        "id": target.pk,
        "device": str(target.device_id),
        "device_name": target.device.name,
        "phase": target.phase,
        "state": target.state,
        "progress": target.progress,
        "reason": target.reason,
        "detail": target.detail,
        "updated_at": _iso(target.updated_at),
    }


def publish_deployment(deployment_id: uuid.UUID) -> None:
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:
        return
    message = {"type": STATUS_EVENT, "deployment": deployment_summary(deployment)}
    send_to_groups([deployment_group(deployment.pk), DEPLOYMENTS_GROUP], message)


def publish_targets(target_ids: Sequence[int]) -> None:
    targets = list(DeploymentTarget.objects.filter(pk__in=target_ids).select_related("device"))
    by_deployment: dict[object, list[dict[str, Any]]] = {}
    for target in targets:
        by_deployment.setdefault(target.deployment_id, []).append(target_summary(target))
    for deployment_id, summaries in by_deployment.items():
        message = {"type": TARGETS_EVENT, "targets": summaries}
        send_to_groups([deployment_group(deployment_id)], message)
