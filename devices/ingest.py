"""The heartbeat hot path: heartbeats stored straight from ASGI, in batched SQL statements.

Every agent heartbeats every few seconds, so this is the request the control plane serves
most, by far. Through Django's ASGI handler, middleware and DRF a heartbeat costs several
milliseconds of CPU before it does any work (Django hops to a fresh thread ~30 times per
request under ASGI); see benchmarks/results/fleet.md. So the ASGI application sends
`POST /api/v1/agents/heartbeat/` here first, and this serves the common case natively:

- the request is well-formed JSON from a device with a well-formed credential;
- its telemetry passes `fast_telemetry` (which accepts only what the DRF serializer accepts,
  and yields exactly what it would);
- it reports no links.

Then one statement, in autocommit and so in one transaction, checks the credential and does
what `actions.record_heartbeat` does (`HEARTBEATS_SQL`, for a batch of heartbeats: see
`HeartbeatWriter`), and the live events go to `events.LiveEventBatcher`. Anything else (a
bad credential or body, links, a retired device, an odd header) is replayed, untouched,
into Django, where `HeartbeatView` and `actions.record_heartbeat` remain the reference
implementation: every error still comes from the DRF view, so agents see exactly the same
answers, and the fast path cannot store what the view would refuse.

It runs only on PostgreSQL; on SQLite every heartbeat goes through Django.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection
from django.http.request import split_domain_port, validate_host
from psycopg_pool import AsyncConnectionPool
from rest_framework.fields import IntegerField

from devices import events
from devices.actions import desired_state_of
from devices.api.serializers import (
    FiniteFloatField,
    TelemetrySampleSerializer,
    storable_json_problem,
)
from devices.credentials import hash_secret, parse_device_credential
from devices.models import Device, DeviceCredential, DeviceStatus, StatusChange, Telemetry

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

HEARTBEAT_PATH = "/api/v1/agents/heartbeat/"
# The bounds come from the serializer itself, so the two paths cannot drift apart.
_SAMPLE_FIELDS = TelemetrySampleSerializer().fields
MAX_INFERENCE_COUNT = cast(int, cast(IntegerField, _SAMPLE_FIELDS["inference_count"]).max_value)
# name -> largest accepted value (the smallest is 0 for all).
FLOAT_FIELDS: dict[str, float] = {
    name: math.inf if field.max_value is None else float(field.max_value)
    for name, field in _SAMPLE_FIELDS.items()
    if isinstance(field, FiniteFloatField)
}
SAMPLE_COLUMNS = (*FLOAT_FIELDS, "inference_count")


def fast_telemetry(body: Any, now: datetime) -> list[dict[str, Any]] | None:
    """The samples of a heartbeat body if it certainly is valid and plain; None when unsure.

    None is not a refusal: the request then goes to the DRF view, which accepts it or names
    the field at fault. What this accepts, the serializer accepts with the same values: it
    only takes numbers as JSON numbers (no booleans, no numeric strings), timestamps that
    `datetime.fromisoformat` reads (Django's own first try), and no links.
    """
    if not isinstance(body, dict) or body.get("links"):
        return None
    telemetry = body.get("telemetry", [])
    if not isinstance(telemetry, list) or len(telemetry) > settings.TRIAD_MAX_TELEMETRY_BATCH:
        return None
    latest_allowed = now + timedelta(seconds=settings.TRIAD_MAX_CLOCK_SKEW_S)
    samples = []
    for item in telemetry:
        sample = _fast_sample(item, latest_allowed)
        if sample is None:
            return None
        samples.append(sample)
    return samples


def _fast_sample(item: Any, latest_allowed: datetime) -> dict[str, Any] | None:
    if not isinstance(item, dict) or not isinstance(item.get("ts"), str):
        return None
    try:
        ts = datetime.fromisoformat(item["ts"])
        # As DRF's DateTimeField does with USE_TZ: naive means UTC, aware is made UTC.
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if ts > latest_allowed:
        return None
    sample: dict[str, Any] = {"ts": ts}
    for name, largest in FLOAT_FIELDS.items():
        if name in item:
            value = item[name]
            if value is not None:
                if type(value) not in (int, float):
                    return None
                try:
                    value = float(value)
                except OverflowError:  # an integer too large for a float
                    return None
                if not (math.isfinite(value) and 0 <= value <= largest):
                    return None
            sample[name] = value
    if "inference_count" in item:
        count = item["inference_count"]
        if count is not None and (type(count) is not int or not 0 <= count <= MAX_INFERENCE_COUNT):
            return None
        sample["inference_count"] = count
    metrics = item.get("metrics", {})
    if type(metrics) is not dict or storable_json_problem(metrics):
        return None
    sample["metrics"] = metrics
    return sample


def _latest(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    # max() keeps the first of equal timestamps, as record_heartbeat does.
    return max(samples, key=lambda sample: sample["ts"], default=None)


# One statement, so one round trip and one transaction, for a batch of heartbeats (see
# HeartbeatWriter). Per heartbeat it does what record_heartbeat does: lock the device row
# (if the credential is its active one and it is not retired), refresh its liveness and
# latest readings, record the flip to online if it was not, store the samples. Rows are
# locked in id order, so concurrent batches cannot deadlock. A heartbeat whose credential
# does not match changes nothing and is not returned; the request then goes to Django,
# which answers 401 or 403. Comparing hashes in SQL leaks nothing useful: the secret has
# 256 random bits, and the hash of a guess tells nothing about the real one.
HEARTBEATS_SQL = f"""
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(heartbeats)s::jsonb) AS i(
        device_id uuid, key_hash text, now timestamptz,
        cpu_percent float8, memory_percent float8, power_w float8, energy_j float8,
        samples jsonb
    )
    -- jsonb_to_recordset has no row estimate (the planner guesses 100, and then prefers
    -- reading every device and credential to looking a few up); LIMIT tells it the count.
    LIMIT %(count)s
), old AS (
    SELECT d.id, d.status
    FROM {Device._meta.db_table} AS d
    JOIN input AS i ON i.device_id = d.id
    JOIN {DeviceCredential._meta.db_table} AS c
      ON c.device_id = d.id AND c.revoked_at IS NULL AND c.key_hash = i.key_hash
    WHERE d.status <> '{DeviceStatus.RETIRED}'
    ORDER BY d.id
    FOR UPDATE OF d
), device AS (
    UPDATE {Device._meta.db_table} AS d
    SET status = '{DeviceStatus.ONLINE}',
        last_heartbeat_at = i.now,
        offline_after = i.now + make_interval(secs => d.heartbeat_interval_s * %(missed)s),
        last_cpu_percent = COALESCE(i.cpu_percent, d.last_cpu_percent),
        last_memory_percent = COALESCE(i.memory_percent, d.last_memory_percent),
        last_power_w = COALESCE(i.power_w, d.last_power_w),
        last_energy_j = COALESCE(i.energy_j, d.last_energy_j)
    FROM old JOIN input AS i ON i.device_id = old.id
    WHERE d.id = old.id
    RETURNING d.id, old.status AS was, i.now, i.samples, d.name, d.tier,
              d.heartbeat_interval_s, d.last_cpu_percent, d.last_memory_percent,
              d.last_power_w, d.last_energy_j, d.desired_model, d.desired_profile
), flip AS (
    INSERT INTO {StatusChange._meta.db_table} (device_id, from_status, to_status, at, reason)
    SELECT id, was, '{DeviceStatus.ONLINE}', now, 'heartbeat received'
    FROM device
    WHERE was <> '{DeviceStatus.ONLINE}'
), stored AS (
    INSERT INTO {Telemetry._meta.db_table} (device_id, received_at, ts, {", ".join(SAMPLE_COLUMNS)},
                                            metrics)
    SELECT device.id, device.now, s.ts, {", ".join(f"s.{c}" for c in SAMPLE_COLUMNS)},
           COALESCE(s.metrics, '{{}}')
    FROM device CROSS JOIN LATERAL jsonb_to_recordset(device.samples) AS s(
        ts timestamptz, {", ".join(f"{c} float8" for c in FLOAT_FIELDS)},
        inference_count integer, metrics jsonb
    )
    -- A sample the agent resends (its answer was lost) is stored once.
    ON CONFLICT (device_id, ts) DO NOTHING
)
SELECT id, name, tier, heartbeat_interval_s, last_cpu_percent, last_memory_percent,
       last_power_w, last_energy_j, desired_model, desired_profile
FROM device
"""


@dataclass(frozen=True)
class StoredHeartbeat:
    """What the batch statement returns for a heartbeat it stored."""

    name: str
    tier: str
    heartbeat_interval_s: int
    cpu_percent: float | None
    memory_percent: float | None
    power_w: float | None
    energy_j: float | None
    desired_model: dict[str, Any] | None
    desired_profile: dict[str, Any] | None


@dataclass
class _Pending:
    device_id: uuid.UUID
    row: dict[str, Any]  # one element of HEARTBEATS_SQL's input
    done: asyncio.Future[StoredHeartbeat | None]


class HeartbeatWriter:
    """Writes one event loop's heartbeats in batches, the way group commit does.

    Whatever arrives while a batch is being written goes into the next one, so a lone
    heartbeat waits for nothing, and under load one statement and one commit carry many
    heartbeats: far fewer round trips and WAL flushes, for the server and for PostgreSQL.
    At most `concurrency` batches are in flight. A device's second heartbeat waits for the
    next batch, so a batch never updates one row twice.
    """

    MAX_BATCH = 200

    def __init__(self, pool: AsyncConnectionPool, concurrency: int) -> None:
        self.pool = pool
        self.concurrency = concurrency
        self.queue: collections.deque[_Pending] = collections.deque()
        self.writers = 0

    async def write(self, device_id: uuid.UUID, row: dict[str, Any]) -> StoredHeartbeat | None:
        """Store one heartbeat; None when its credential does not match (nothing stored)."""
        done: asyncio.Future[StoredHeartbeat | None] = asyncio.get_running_loop().create_future()
        self.queue.append(_Pending(device_id, row, done))
        if self.writers < self.concurrency:
            self.writers += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        try:
            while self.queue:
                await self._settle(self._next_batch())
        finally:
            self.writers -= 1

    async def _settle(self, batch: list[_Pending]) -> None:
        try:
            stored = await self._write(batch)
        except Exception as error:
            if len(batch) > 1:
                # One heartbeat the database refuses must not fail the others with it:
                # write them one by one, so only the culprit gets the error.
                for pending in batch:
                    await self._settle([pending])
                return
            if not batch[0].done.done():
                batch[0].done.set_exception(error)
            return
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(stored.get(pending.device_id))

    def _next_batch(self) -> list[_Pending]:
        batch: dict[uuid.UUID, _Pending] = {}
        later = []
        while self.queue and len(batch) < self.MAX_BATCH:
            pending = self.queue.popleft()
            if pending.device_id in batch:
                later.append(pending)
            else:
                batch[pending.device_id] = pending
        self.queue.extendleft(reversed(later))
        return list(batch.values())

    async def _write(self, batch: list[_Pending]) -> dict[uuid.UUID, StoredHeartbeat]:
        heartbeats = json.dumps([pending.row for pending in batch], default=_isoformat)
        params = {
            "heartbeats": heartbeats,
            "count": len(batch),
            "missed": settings.TRIAD_OFFLINE_AFTER_MISSED,
        }
        async with self.pool.connection() as connection:
            cursor = await connection.execute(HEARTBEATS_SQL, params)
            rows = await cursor.fetchall()
        return {row[0]: StoredHeartbeat(*row[1:]) for row in rows}


class HeartbeatIngest:
    """ASGI middleware: serve plain heartbeats here, hand everything else to `app`."""

    # Batches in flight per process: while one waits on PostgreSQL, the next can go out.
    WRITERS = 2

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._writer: HeartbeatWriter | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self.enabled = str(settings.DATABASES["default"]["ENGINE"]).endswith("postgresql")

    # Typed loosely: ASGI servers, Django and test clients each spell these types their way.
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (
            self.enabled
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == HEARTBEAT_PATH
        ):
            await self.app(scope, receive, send)
            return
        request = _plain_request(scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        credential, length = request
        body = await _read_body(receive, length)
        if body is None:  # the client went away
            return
        if len(body) > length:
            await _send_json(
                send,
                400,
                {"detail": "Body is longer than its Content-Length.", "code": "parse_error"},
            )
            return
        answer = await self._serve(credential, body)
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        status, payload = answer
        await _send_json(send, status, payload)

    async def _serve(self, credential: str, body: bytes) -> tuple[int, dict[str, Any]] | None:
        try:
            data = json.loads(body, parse_constant=_refuse_constant)
        except ValueError:
            return None
        now = datetime.now(UTC)
        samples = fast_telemetry(data, now)
        if samples is None:
            return None
        parsed = parse_device_credential(credential)
        assert parsed is not None  # checked by _plain_request
        device_id = parsed[0]
        latest = _latest(samples) or {}
        row = {
            "device_id": str(device_id),
            "key_hash": hash_secret(credential),
            "now": now,
            "cpu_percent": latest.get("cpu_percent"),
            "memory_percent": latest.get("memory_percent"),
            "power_w": latest.get("power_w"),
            "energy_j": latest.get("energy_j"),
            "samples": samples,
        }
        try:
            writer = await self._loop_writer()
            stored = await writer.write(device_id, row)
        except Exception:
            log.exception("heartbeat fast path failed")
            return 503, {
                "detail": "The database is unavailable; retry later.",
                "code": "service_unavailable",
            }
        if stored is None:
            return None
        summary = {
            "id": str(device_id),
            "name": stored.name,
            "tier": stored.tier,
            "status": DeviceStatus.ONLINE.value,
            "cpu_percent": stored.cpu_percent,
            "memory_percent": stored.memory_percent,
            "power_w": stored.power_w,
            "energy_j": stored.energy_j,
            "last_heartbeat_at": now.isoformat(),
            "as_of": now.isoformat(),
        }
        events.live_event_batcher().add(summary, [events.sample_point_of(s) for s in samples])
        return 200, {
            "accepted": len(samples),
            "server_time": _drf_datetime(datetime.now(UTC)),
            "desired_state": desired_state_of(
                stored.heartbeat_interval_s, stored.desired_model, stored.desired_profile
            ),
        }

    async def _loop_writer(self) -> HeartbeatWriter:
        """This event loop's writer and its pool of autocommit connections (uvicorn runs one
        loop per process; tests run several, one after the other)."""
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer_loop is not loop:
            # Django's own parameters, so OPTIONS such as sslmode apply here too; minus the
            # two that only fit its synchronous connections, and Django's switch that turns
            # off prepared statements: the batch statement is planned once per connection
            # instead of at every batch (measured: PostgreSQL CPU 73 % -> 56 % at 1000/s).
            params = connection.get_connection_params()
            unfit = ("cursor_factory", "context", "prepare_threshold")
            kwargs = {k: v for k, v in params.items() if k not in unfit}
            pool = AsyncConnectionPool(
                kwargs={**kwargs, "autocommit": True},
                min_size=1,
                max_size=self.WRITERS,
                timeout=10,
                open=False,
                name="heartbeat-ingest",
            )
            await pool.open()
            self._writer, self._writer_loop = HeartbeatWriter(pool, self.WRITERS), loop
        return self._writer

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer.pool.close()
            self._writer = self._writer_loop = None


def _plain_request(scope: Scope) -> tuple[str, int] | None:
    """(credential, body length) when the headers are the plain kind this path serves."""
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization", b"").split()
    if len(authorization) != 2 or authorization[0].lower() != b"bearer":
        return None
    try:
        credential = authorization[1].decode("ascii")
        length = int(headers[b"content-length"])
    except (KeyError, UnicodeDecodeError, ValueError):
        return None
    content_type = headers.get(b"content-type", b"").replace(b" ", b"").lower()
    accept = headers.get(b"accept", b"*/*")
    host, _ = split_domain_port(headers.get(b"host", b"").decode("latin-1"))
    if (
        parse_device_credential(credential) is None
        or not 0 <= length <= settings.TRIAD_MAX_BODY_BYTES
        or content_type not in (b"application/json", b"application/json;charset=utf-8")
        or accept not in (b"*/*", b"application/json")
        or not validate_host(host, settings.ALLOWED_HOSTS)
    ):
        return None
    return credential, length


async def _read_body(receive: Receive, length: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > length:
            return b"".join(chunks)  # longer than announced: the caller refuses it
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands Django the body already read, then the client's own events."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# The headers Django's middleware adds to the view's answer, so that both paths look alike.
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"vary", b"Accept"),
    (b"allow", b"POST, OPTIONS"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _drf_datetime(value: datetime) -> str:
    """How DRF's DateTimeField writes a UTC time: ISO 8601 with a Z."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _refuse_constant(name: str) -> Any:
    # DRF's JSON parser is strict: NaN and Infinity are not JSON.
    raise ValueError(f"{name} is not valid JSON")
