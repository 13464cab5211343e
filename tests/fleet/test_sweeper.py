"""The offline sweep: who it flips, what it records and announces, and that racing
sweepers never flip a device twice."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone

from devices import actions
from devices.actions import mark_overdue_devices_offline, record_heartbeat
from devices.events import FLEET_GROUP
from devices.models import Device, DeviceStatus, StatusChange
from devices.tasks import sweep_offline_devices
from tests.fleet.helpers import GroupListener, make_device, mentions


@pytest.fixture
def now() -> Any:
    return timezone.now()


def test_flips_only_online_devices_past_their_deadline(db: Any, now: Any) -> None:
    overdue = make_device("overdue", offline_after=now - timedelta(seconds=1))
    on_time = make_device("on-time", offline_after=now + timedelta(seconds=30))
    at_deadline = make_device("at-deadline", offline_after=now)  # strictly "past" only
    already_offline = make_device(
        "already-offline", DeviceStatus.OFFLINE, offline_after=now - timedelta(hours=1)
    )
    pending = make_device("pending", DeviceStatus.PENDING, offline_after=None)
    retired = make_device("retired", DeviceStatus.RETIRED, offline_after=now - timedelta(hours=1))

    assert mark_overdue_devices_offline(now) == [overdue.id]

    statuses = dict(Device.objects.values_list("name", "status"))
    assert statuses == {
        "overdue": DeviceStatus.OFFLINE,
        "on-time": DeviceStatus.ONLINE,
        "at-deadline": DeviceStatus.ONLINE,
        "already-offline": DeviceStatus.OFFLINE,
        "pending": DeviceStatus.PENDING,
        "retired": DeviceStatus.RETIRED,
    }
    change = StatusChange.objects.get()
    assert (change.device_id, change.from_status, change.to_status, change.at) == (
        overdue.id,
        DeviceStatus.ONLINE,
        DeviceStatus.OFFLINE,
        now,
    )
    assert change.reason == "missed heartbeats"
    untouched = [on_time, at_deadline, already_offline, pending, retired]
    assert not StatusChange.objects.filter(device__in=untouched).exists()


def test_sweep_is_idempotent(db: Any, now: Any) -> None:
    make_device("a", offline_after=now - timedelta(seconds=5))
    make_device("b", offline_after=now - timedelta(seconds=5))
    assert len(mark_overdue_devices_offline(now)) == 2
    assert mark_overdue_devices_offline(now) == []
    assert mark_overdue_devices_offline(now + timedelta(minutes=5)) == []
    assert StatusChange.objects.count() == 2
    # The Celery task is the same action behind a name; it reports how many it flipped.
    assert sweep_offline_devices() == 0


def test_flip_is_announced_to_the_fleet_group_after_commit(
    db: Any, now: Any, django_capture_on_commit_callbacks: Any
) -> None:
    device = make_device("announced", offline_after=now - timedelta(seconds=1))
    listener = GroupListener(get_channel_layer(), FLEET_GROUP)
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            assert mark_overdue_devices_offline(now) == [device.id]
        assert len(callbacks) == 1
        seen = listener.messages_until(lambda m: mentions(m, device.id))
    finally:
        listener.close()
    message = seen[-1]
    assert message["type"] == "fleet.devices"
    [summary] = message["devices"]
    assert summary["status"] == DeviceStatus.OFFLINE and summary["name"] == "announced"


def test_nothing_is_announced_when_nothing_flips(
    db: Any, now: Any, django_capture_on_commit_callbacks: Any
) -> None:
    make_device("fine", offline_after=now + timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert mark_overdue_devices_offline(now) == []
    assert callbacks == []


def test_heartbeat_after_offline_flips_back_online(db: Any, now: Any) -> None:
    device = make_device("returns", offline_after=now - timedelta(seconds=1))
    assert mark_overdue_devices_offline(now) == [device.id]

    later = now + timedelta(seconds=2)
    result = record_heartbeat(device.id, [{"ts": later, "cpu_percent": 5.0}], now=later)

    device.refresh_from_db()
    assert result.accepted == 1
    assert device.status == DeviceStatus.ONLINE
    assert device.offline_after is not None and device.offline_after > later
    changes = list(device.status_changes.order_by("at").values_list("from_status", "to_status"))
    assert changes == [
        (DeviceStatus.ONLINE, DeviceStatus.OFFLINE),
        (DeviceStatus.OFFLINE, DeviceStatus.ONLINE),
    ]
    assert device.status_changes.order_by("-at")[0].reason == "heartbeat received"
    # Back online with a fresh deadline, so the same sweep no longer touches it.
    assert mark_overdue_devices_offline(later) == []


def test_concurrent_sweepers_never_double_flip(transactional_db: Any, now: Any) -> None:
    """Two sweepers on their own database connections race over the same rows.

    Both read the full list of overdue devices before either claims one (a barrier in
    front of the first claim), so every device is contended.
    """
    overdue = now - timedelta(seconds=1)
    devices = [make_device(f"dev-{i:02}", offline_after=overdue) for i in range(20)]
    claim = actions._claim_offline
    barrier = threading.Barrier(2, timeout=20)
    local = threading.local()

    def claim_after_both_have_listed(device_id: Any, when: Any) -> bool:
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait()
        return claim(device_id, when)

    results: dict[str, list[Any]] = {}
    errors: list[BaseException] = []

    def sweep(name: str) -> None:
        try:
            results[name] = mark_overdue_devices_offline(now)
        except BaseException as error:
            errors.append(error)
            barrier.abort()
        finally:
            connection.close()  # this thread's own connection

    patch = pytest.MonkeyPatch()
    patch.setattr(actions, "_claim_offline", claim_after_both_have_listed)
    try:
        threads = [threading.Thread(target=sweep, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "a sweeper hung"
    finally:
        patch.undo()

    assert errors == []
    ids = {device.id for device in devices}
    flipped_a, flipped_b = set(results["a"]), set(results["b"])
    assert flipped_a | flipped_b == ids
    assert flipped_a & flipped_b == set()
    assert len(results["a"]) + len(results["b"]) == len(ids)
    per_device = {
        device_id: StatusChange.objects.filter(device_id=device_id).count() for device_id in ids
    }
    assert set(per_device.values()) == {1}, per_device
    assert set(Device.objects.values_list("status", flat=True)) == {DeviceStatus.OFFLINE}
