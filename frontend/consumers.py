"""WebSocket consumers that relay fleet, scheduling, model hub and rollout events to
operators' browsers."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from controlplane.roles import is_operator
from deployments.events import DEPLOYMENTS_GROUP, deployment_group
from devices.events import FLEET_GROUP, device_group
from models_hub.events import JOBS_GROUP as HUB_JOBS_GROUP
from models_hub.events import job_group as hub_job_group
from scheduling.events import DECISIONS_GROUP, JOBS_GROUP, job_group


class OperatorConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only operators and admins; subclasses say which group to join."""

    group_name = ""

    def get_group(self) -> str:
        return self.group_name

    async def connect(self) -> None:
        allowed = await database_sync_to_async(is_operator)(self.scope.get("user"))
        if not allowed:
            await self.close(code=4403)
            return
        self.group = self.get_group()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)


class FleetConsumer(OperatorConsumer):
    group_name = FLEET_GROUP

    async def fleet_devices(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "devices", "devices": event["devices"]})


class DeviceConsumer(OperatorConsumer):
    def get_group(self) -> str:
        return device_group(self.scope["url_route"]["kwargs"]["device_id"])

    async def device_update(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "update", "device": event["device"], "samples": event["samples"]}
        )


class SchedulingJobConsumer(OperatorConsumer):
    """A job's page: its status, its progress per generation, decisions on its solutions."""

    def get_group(self) -> str:
        return job_group(self.scope["url_route"]["kwargs"]["job_id"])

    async def job_status(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "job": event["job"]})

    async def job_progress(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "progress", "entries": event["entries"]})

    async def decision_update(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "decision", "decision": event["decision"]})


class SchedulingJobsConsumer(OperatorConsumer):
    """The job list: every job's status changes."""

    group_name = JOBS_GROUP

    async def job_status(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "job": event["job"]})


class DecisionsConsumer(OperatorConsumer):
    """The review queue: every proposal, approval and rejection."""

    group_name = DECISIONS_GROUP

    async def decision_update(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "decision", "decision": event["decision"]})


class CompressionJobConsumer(OperatorConsumer):
    """A compression job's page: its status changes, and its progress with new log lines."""

    def get_group(self) -> str:
        return hub_job_group(self.scope["url_route"]["kwargs"]["job_id"])

    async def job_status(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "job": event["job"]})

    async def job_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "progress",
                "progress": event["progress"],
                "stage": event["stage"],
                "lines": event["lines"],
            }
        )


class CompressionJobsConsumer(OperatorConsumer):
    """The compression job list: every job's status changes."""

    group_name = HUB_JOBS_GROUP

    async def job_status(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "job": event["job"]})


class DeploymentConsumer(OperatorConsumer):
    """A rollout's page: its status, phase and counts, and each device's state."""

    def get_group(self) -> str:
        return deployment_group(self.scope["url_route"]["kwargs"]["deployment_id"])

    async def deployment_status(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "deployment": event["deployment"]})

    async def deployment_targets(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "targets", "targets": event["targets"]})


class DeploymentsConsumer(OperatorConsumer):
    """The rollout list: every deployment's status, phase and counts."""

    group_name = DEPLOYMENTS_GROUP

    async def deployment_status(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "deployment": event["deployment"]})
