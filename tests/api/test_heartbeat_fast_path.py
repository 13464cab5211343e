"""The heartbeat fast path (devices/ingest.py) answers exactly as the DRF view would.

Two halves: `fast_telemetry` never accepts what the serializer refuses and yields the same
values (checked on generated bodies, no database needed); and heartbeats sent through the
ASGI application are stored, refused and announced as the agent protocol says (these need
PostgreSQL, since the fast path runs only there).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.asgi import get_asgi_application
from django.db import connection
from django.utils import timezone

from devices import actions, events
from devices.api.serializers import HeartbeatRequestSerializer
from devices.ingest import HeartbeatIngest, fast_telemetry
from devices.models import Device, DeviceStatus, NetworkLink, StatusChange, Telemetry
from tests.api.test_agent_api import sample as agent_api_sample

HEARTBEAT = "/api/v1/agents/heartbeat/"
# The ORM calls below use database_sync_to_async, which closes the thread's connection
# afterwards: with pooling that hands it back, so the test database can be dropped.


# --- fast_telemetry against the serializer ----------------------------------------------
def _values(rng: random.Random) -> Any:
    return rng.choice(
        [0, 1, 12.5, 37, 99.999, 100, 100.0001, 101, -0.1, -3, 1e5, 1e5 + 1, 1e12, 2**31 - 1,
         2**31, 7.0, "12", "lots", True, False, None, [], {}, {"a": 1}, math.nan, math.inf]
    )  # fmt: skip


def _timestamps(rng: random.Random, now: datetime) -> Any:
    return rng.choice(
        [
            now.isoformat(),
            (now - timedelta(minutes=3)).isoformat().replace("+00:00", "Z"),
            (now - timedelta(hours=2)).replace(tzinfo=None).isoformat(),
            (now + timedelta(minutes=4)).isoformat(),
            (now + timedelta(minutes=6)).isoformat(),
            "2026-11-27T16:00:00+05:30",
            "2026-11-27",
            "2026-11-27 16:00",
            "not a time",
            "",
            None,
            1764259200,
            "9999-12-31T23:59:59-05:00",
        ]
    )


def _body(rng: random.Random, now: datetime) -> Any:
    if rng.random() < 0.03:
        return rng.choice([[], None, "x", {"telemetry": "x"}, {"telemetry": [1]}, {}])
    samples = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        sample: dict[str, Any] = {"ts": _timestamps(rng, now)}
        for name in ("cpu_percent", "memory_percent", "power_w", "energy_j", "inference_count",
                     "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):  # fmt: skip
            if rng.random() < 0.7:
                sample[name] = _values(rng)
        if rng.random() < 0.5:
            sample["metrics"] = rng.choice([{"accuracy": 0.9}, {}, None, [1], "x"])
        if rng.random() < 0.05:
            del sample["ts"]
        if rng.random() < 0.05:
            sample["unknown"] = 1
        samples.append(sample)
    body: dict[str, Any] = {"telemetry": samples}
    if rng.random() < 0.05:
        body["links"] = [{"to": "cloud", "bandwidth_mbps": 1, "rtt_ms": 1}]
    return body


def test_fast_telemetry_accepts_only_what_the_serializer_accepts() -> None:
    rng = random.Random(7)
    now = timezone.now()
    accepted = 0
    for _ in range(4000):
        body = _body(rng, now)
        fast = fast_telemetry(body, now)
        if fast is None:
            continue  # the DRF view decides
        accepted += 1
        serializer = HeartbeatRequestSerializer(data=body)
        assert serializer.is_valid(), (body, serializer.errors)
        expected = [dict(sample) for sample in serializer.validated_data["telemetry"]]
        assert fast == expected, body
        for ours, theirs in zip(fast, expected, strict=True):
            assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}
    assert accepted > 500  # the generator does reach the fast path


# --- through the ASGI application -------------------------------------------------------
needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the fast path runs on PostgreSQL only"
)
pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def ingest(transactional_db: Any) -> AsyncIterator[HeartbeatIngest]:
    app = HeartbeatIngest(get_asgi_application())
    yield app
    await events.live_event_batcher().drain()
    await app.aclose()


@pytest.fixture
async def agent(ingest: HeartbeatIngest, enrolled: Any) -> AsyncIterator[httpx.AsyncClient]:
    _, credential = enrolled
    transport = httpx.ASGITransport(app=ingest)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {credential}"},
    ) as client:
        yield client


def sample(**changes: Any) -> dict[str, Any]:
    """The agent API tests' sample without p95/p99, to show omitted readings stored as null."""
    row = agent_api_sample(**changes)
    for omitted in ("latency_p95_ms", "latency_p99_ms"):
        if omitted not in changes:
            del row[omitted]
    return row


def test_production_app_routes_http_through_the_fast_path() -> None:
    from controlplane.asgi import application

    assert isinstance(application.application_mapping["http"], HeartbeatIngest)


@needs_postgres
@pytestmark_db
class TestFastPath:
    async def test_plain_heartbeat_is_stored_and_answered_like_the_view(
        self, agent: httpx.AsyncClient, enrolled: Any
    ) -> None:
        device, _ = enrolled
        first, second = sample(cpu_percent=10.0), sample(cpu_percent=20.0, metrics={})
        response = await agent.post(HEARTBEAT, json={"telemetry": [first, second]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["accepted"] == 2
        assert body["desired_state"] == {"heartbeat_interval_s": device.heartbeat_interval_s}
        assert body["server_time"].endswith("Z")
        assert response.headers["content-type"] == "application/json"

        @database_sync_to_async
        def stored() -> tuple[Device, list[Telemetry], list[StatusChange]]:
            return (
                Device.objects.get(pk=device.pk),
                list(Telemetry.objects.filter(device=device).order_by("ts")),
                list(StatusChange.objects.filter(device=device)),
            )

        fresh, rows, changes = await stored()
        assert fresh.status == DeviceStatus.ONLINE
        assert fresh.last_cpu_percent == 20.0 and fresh.last_energy_j == 100.0
        assert fresh.offline_after == fresh.last_heartbeat_at + timedelta(
            seconds=3 * fresh.heartbeat_interval_s
        )
        assert [(r.cpu_percent, r.inference_count, r.metrics) for r in rows] == [
            (10.0, 3, {"accuracy": 0.97}),
            (20.0, 3, {}),
        ]
        assert rows[0].ts == datetime.fromisoformat(first["ts"])
        assert rows[0].latency_p95_ms is None and rows[0].received_at == fresh.last_heartbeat_at
        assert [(c.from_status, c.to_status, c.reason) for c in changes] == [
            (DeviceStatus.PENDING, DeviceStatus.ONLINE, "heartbeat received")
        ]

        # Steady state: no new status change; a keep-alive keeps the latest readings.
        assert (await agent.post(HEARTBEAT, json={})).json()["accepted"] == 0
        fresh, rows, changes = await stored()
        assert len(rows) == 2 and len(changes) == 1 and fresh.last_cpu_percent == 20.0

    async def test_resent_samples_are_stored_once_and_missing_readings_kept(
        self, agent: httpx.AsyncClient, enrolled: Any
    ) -> None:
        device, _ = enrolled
        body = {"telemetry": [sample(power_w=5.0)]}
        for _ in range(2):  # the agent resends when it never saw the first answer
            assert (await agent.post(HEARTBEAT, json=body)).status_code == 200
        partial = {"ts": timezone.now().isoformat(), "cpu_percent": 70.0}
        assert (await agent.post(HEARTBEAT, json={"telemetry": [partial]})).status_code == 200

        @database_sync_to_async
        def stored() -> tuple[Device, int]:
            return Device.objects.get(pk=device.pk), Telemetry.objects.filter(device=device).count()

        fresh, count = await stored()
        assert count == 2
        assert fresh.last_cpu_percent == 70.0 and fresh.last_power_w == 5.0

    async def test_offline_device_comes_back_online(
        self, agent: httpx.AsyncClient, enrolled: Any
    ) -> None:
        device, _ = enrolled
        await database_sync_to_async(Device.objects.filter(pk=device.pk).update)(
            status=DeviceStatus.OFFLINE
        )
        assert (await agent.post(HEARTBEAT, json={"telemetry": [sample()]})).status_code == 200
        change = await database_sync_to_async(StatusChange.objects.get)(device=device)
        assert (change.from_status, change.to_status) == (DeviceStatus.OFFLINE, DeviceStatus.ONLINE)

    @pytest.mark.parametrize(
        "bad,field",
        [
            ({"cpu_percent": 101}, "cpu_percent"),
            ({"energy_j": -3}, "energy_j"),
            ({"inference_count": 2**31}, "inference_count"),
            ({"ts": "not a time"}, "ts"),
            ({"ts": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "ts"),
            ({"cpu_percent": "lots"}, "cpu_percent"),
            ({"metrics": None}, "metrics"),
            ({"energy_j": 10**400}, "energy_j"),
            ({"metrics": {"note": "a\x00b"}}, "metrics"),
        ],
    )
    async def test_bad_sample_names_field_and_stores_nothing(
        self, agent: httpx.AsyncClient, bad: dict[str, Any], field: str
    ) -> None:
        response = await agent.post(HEARTBEAT, json={"telemetry": [sample(), sample(**bad)]})
        assert response.status_code == 400
        errors = response.json()["telemetry"]
        assert errors[0] == {} and field in errors[1]
        assert await database_sync_to_async(Telemetry.objects.count)() == 0

    async def test_infinite_reading_is_refused(self, agent: httpx.AsyncClient) -> None:
        body = '{"telemetry": [{"ts": "' + datetime.now(UTC).isoformat() + '", "energy_j": 1e400}]}'
        response = await agent.post(
            HEARTBEAT, content=body.encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert "finite" in response.json()["telemetry"][0]["energy_j"][0]
        assert await database_sync_to_async(Telemetry.objects.count)() == 0

    async def test_unpaired_surrogate_in_metrics_is_refused(self, agent: httpx.AsyncClient) -> None:
        ts = datetime.now(UTC).isoformat()
        body = '{"telemetry": [{"ts": "' + ts + '", "metrics": {"note": "\\ud800"}}]}'
        response = await agent.post(
            HEARTBEAT, content=body.encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 400 and "metrics" in response.json()["telemetry"][0]
        assert await database_sync_to_async(Telemetry.objects.count)() == 0

    async def test_body_longer_than_announced_is_refused(
        self, ingest: HeartbeatIngest, enrolled: Any
    ) -> None:
        _, credential = enrolled
        headers = {
            b"authorization": f"Bearer {credential}".encode(),
            b"content-type": b"application/json",
            b"content-length": b"2",
            b"host": b"testserver",
        }
        scope = {"type": "http", "method": "POST", "path": HEARTBEAT,
                 "headers": list(headers.items())}  # fmt: skip
        messages = [{"type": "http.request", "body": b'{"telemetry": []}', "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await ingest(scope, receive, send)
        assert sent[0]["status"] == 400
        assert json.loads(sent[1]["body"])["code"] == "parse_error"

    async def test_malformed_json_is_refused(self, agent: httpx.AsyncClient) -> None:
        response = await agent.post(
            HEARTBEAT, content=b'{"telemetry": [NaN]}', headers={"content-type": "application/json"}
        )
        assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]

    async def test_wrong_secret_is_refused_and_stores_nothing(
        self, ingest: HeartbeatIngest, enrolled: Any
    ) -> None:
        _, credential = enrolled
        transport = httpx.ASGITransport(app=ingest)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(
                HEARTBEAT,
                json={"telemetry": [sample()]},
                headers={"Authorization": f"Bearer {credential[:-4]}abcd"},
            )
        assert response.status_code == 401
        assert response.json()["code"] == "authentication_failed"
        assert await database_sync_to_async(Telemetry.objects.count)() == 0

    async def test_retired_device_is_refused(self, agent: httpx.AsyncClient, enrolled: Any) -> None:
        device, _ = enrolled
        await database_sync_to_async(actions.retire_device)(device)
        response = await agent.post(HEARTBEAT, json={"telemetry": [sample()]})
        assert response.status_code == 401  # retiring revokes the credential
        assert await database_sync_to_async(Telemetry.objects.count)() == 0

    async def test_links_and_oversized_bodies_go_through_the_view(
        self, agent: httpx.AsyncClient, settings: Any
    ) -> None:
        links = [{"to": "cloud", "bandwidth_mbps": 80, "rtt_ms": 25}]
        response = await agent.post(HEARTBEAT, json={"telemetry": [sample()], "links": links})
        assert response.status_code == 200
        assert (await database_sync_to_async(NetworkLink.objects.get)()).dst_tier == "cloud"

        settings.TRIAD_MAX_BODY_BYTES = 2048
        body = {"telemetry": [sample(metrics={"blob": "x" * 4096})]}
        response = await agent.post(HEARTBEAT, json=body)
        assert response.status_code == 413
        assert response.json()["code"] == "request_too_large"

    async def test_live_events_are_batched_to_the_fleet_and_watched_devices(
        self, agent: httpx.AsyncClient, enrolled: Any
    ) -> None:
        device, _ = enrolled
        layer = get_channel_layer()
        fleet_channel = await layer.new_channel()
        device_channel = await layer.new_channel()
        await layer.group_add(events.FLEET_GROUP, fleet_channel)
        await layer.group_add(events.device_group(device.id), device_channel)
        try:
            now = timezone.now()
            for cpu in (10.0, 30.0):
                heartbeat = {"telemetry": [sample(ts=now.isoformat(), cpu_percent=cpu)]}
                assert (await agent.post(HEARTBEAT, json=heartbeat)).status_code == 200
            fleet = await asyncio.wait_for(layer.receive(fleet_channel), 5)
            update = await asyncio.wait_for(layer.receive(device_channel), 5)
        finally:
            await layer.group_discard(events.FLEET_GROUP, fleet_channel)
            await layer.group_discard(events.device_group(device.id), device_channel)
        assert fleet["type"] == events.FLEET_EVENT
        [summary] = fleet["devices"]  # two heartbeats of one device, one entry
        assert summary["id"] == str(device.id) and summary["status"] == "online"
        assert summary["cpu_percent"] == 30.0 and summary["name"] == "cam-1"
        assert update["type"] == events.DEVICE_UPDATE_EVENT
        assert [p["cpu_percent"] for p in update["samples"]] == [10.0, 30.0]
        assert update["samples"][0]["ts"] == now.isoformat()
        assert json.dumps(update)  # JSON-ready, as consumers forward it to browsers
