"""Live events for the browser, sent through the channel layer after commit.

Two ways out:

- `publish_device` sends one device's change at once. Actions use it (enrollment, status
  flips, retirement, the heartbeats that go through Django), after their commit.
- `LiveEventBatcher` is for the heartbeat hot path (`devices.ingest`), where a thousand
  heartbeats a second would mean two thousand channel-layer round trips a second, and a
  browser on the fleet page could never keep up with one message per heartbeat anyway. It
  collects the heartbeats of `FLUSH_INTERVAL_S` and then sends one `fleet.devices` message
  with every device that changed, and a `device.update` to the page of each device someone
  is watching. Operators see a heartbeat at most `FLUSH_INTERVAL_S` (plus a Redis round
  trip) after it was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from controlplane.events import send_to_groups
from devices.models import Device, Telemetry

log = logging.getLogger(__name__)

FLEET_GROUP = "fleet"
# The fleet group gets lists of device summaries: {"type": FLEET_EVENT, "devices": [...]}.
FLEET_EVENT = "fleet.devices"
DEVICE_UPDATE_EVENT = "device.update"
FLUSH_INTERVAL_S = 0.25


def device_group(device_id: object) -> str:
    return f"device.{device_id}"


def device_summary(device: Device, as_of: datetime | None = None) -> dict[str, Any]:
    """What the browser shows of a device. `as_of` orders summaries that can arrive out of
    order (a batched heartbeat after a retirement): pages ignore one older than they hold."""
    return {
        "as_of": (as_of or timezone.now()).isoformat(),
        "id": str(device.id),
        "name": device.name,
        "tier": device.tier,
        "status": device.status,
        "cpu_percent": device.last_cpu_percent,
        "memory_percent": device.last_memory_percent,
        "power_w": device.last_power_w,
        "energy_j": device.last_energy_j,
        "last_heartbeat_at": device.last_heartbeat_at.isoformat()
        if device.last_heartbeat_at
        else None,
    }


def _point(
    ts: datetime,
    cpu_percent: float | None,
    memory_percent: float | None,
    power_w: float | None,
    energy_j: float | None,
) -> dict[str, Any]:
    return {
        "ts": ts.isoformat(),
        "cpu_percent": cpu_percent,
        "memory_percent": memory_percent,
        "power_w": power_w,
        "energy_j": energy_j,
    }


def sample_point(sample: Telemetry) -> dict[str, Any]:
    return _point(sample.ts, sample.cpu_percent, sample.memory_percent, sample.power_w,
                  sample.energy_j)  # fmt: skip


def sample_point_of(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The point of a validated sample (a dict as the heartbeat serializer yields it)."""
    return _point(sample["ts"], sample.get("cpu_percent"), sample.get("memory_percent"),
                  sample.get("power_w"), sample.get("energy_j"))  # fmt: skip


def publish_device(device: Device, samples: Iterable[Telemetry] = ()) -> None:
    """Tell the fleet page and the device's own page what changed.

    Best effort: it runs after the commit, so a channel layer that is down (Redis away)
    must not turn a stored change into an error for the agent or operator who made it.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    summary = device_summary(device)
    try:
        async_to_sync(_send_all)(layer, summary, [sample_point(s) for s in samples])
    except Exception:
        log.exception("could not send the live event of device %s", summary["id"])


async def _send_all(layer: Any, summary: dict[str, Any], points: list[dict[str, Any]]) -> None:
    await layer.group_send(FLEET_GROUP, {"type": FLEET_EVENT, "devices": [summary]})
    await layer.group_send(
        device_group(summary["id"]),
        {"type": DEVICE_UPDATE_EVENT, "device": summary, "samples": points},
    )


class LiveEventBatcher:
    """Coalesces live events on one event loop and sends them every FLUSH_INTERVAL_S.

    `add` never waits: it is called on the request's critical path. A device reported twice
    in one interval is sent once, with its latest summary and all its samples. Events are
    best effort, as with `publish_device`: the heartbeat is stored whatever happens here.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.pending: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self.flushing: asyncio.Task[None] | None = None
        self.flush_now = asyncio.Event()

    def add(self, summary: dict[str, Any], points: list[dict[str, Any]]) -> None:
        if self.layer is None:
            return
        earlier = self.pending.get(summary["id"])
        self.pending[summary["id"]] = (summary, [*earlier[1], *points] if earlier else points)
        if self.flushing is None:
            self.flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush_now.wait(), FLUSH_INTERVAL_S)
        batch, self.pending, self.flushing = self.pending, {}, None
        self.flush_now.clear()
        try:
            await self.layer.group_send(
                FLEET_GROUP,
                {"type": FLEET_EVENT, "devices": [summary for summary, _ in batch.values()]},
            )
            for device_id in await self._watched(list(batch)):
                summary, points = batch[device_id]
                await self.layer.group_send(
                    device_group(device_id),
                    {"type": DEVICE_UPDATE_EVENT, "device": summary, "samples": points},
                )
        except Exception:
            log.exception("could not send %d live device events", len(batch))

    async def _watched(self, device_ids: list[str]) -> list[str]:
        """The devices whose page someone has open.

        With channels-redis, one pipelined EXISTS per Redis shard asks which device groups
        have members, instead of one two-round-trip group_send per device per heartbeat.
        Other layers are asked nothing: every device counts as watched.
        """
        layer = self.layer
        if not all(hasattr(layer, a) for a in ("_group_key", "consistent_hash", "connection")):
            return device_ids
        by_shard: dict[int, list[str]] = defaultdict(list)
        for device_id in device_ids:
            by_shard[layer.consistent_hash(device_group(device_id))].append(device_id)
        watched = []
        for shard, ids in by_shard.items():
            pipeline = layer.connection(shard).pipeline(transaction=False)
            for device_id in ids:
                pipeline.exists(layer._group_key(device_group(device_id)))
            found = await pipeline.execute()
            watched += [device_id for device_id, n in zip(ids, found, strict=True) if n]
        return watched

    async def drain(self) -> None:
        """Send what is pending now, and wait until it is sent (for tests and shutdown)."""
        flushing = self.flushing
        if flushing is not None:
            self.flush_now.set()
            await flushing


_batchers: dict[asyncio.AbstractEventLoop, LiveEventBatcher] = {}


def live_event_batcher() -> LiveEventBatcher:
    """The batcher of the running event loop (uvicorn runs one per process)."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        for old in [old for old in _batchers if old.is_closed()]:
            del _batchers[old]
        batcher = _batchers[loop] = LiveEventBatcher(get_channel_layer())
    return batcher


# --- agents -----------------------------------------------------------------------------
AGENT_NUDGE_EVENT = "agent.nudge"


def agent_group(device_id: object) -> str:
    """The group of a device's agent WebSocket (`devices.consumers.AgentConsumer`)."""
    return f"agent.{device_id}"


def nudge_agents(device_ids: Iterable[object]) -> None:
    """Tell connected agents that their desired state changed: they heartbeat at once."""
    send_to_groups([agent_group(pk) for pk in device_ids], {"type": AGENT_NUDGE_EVENT})
