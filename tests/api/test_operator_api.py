"""Operator API: devices, telemetry, enrollment tokens and links."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from devices.actions import record_heartbeat
from devices.models import Device, DeviceStatus, EnrollmentToken, NetworkLink
from tests.api.mixins import CreateMixin, ListMixin, RoleMixin, client_for


class TestDeviceAPI(RoleMixin, ListMixin):
    url = "/api/v1/devices/"
    fixture_name = "enrolled"

    def test_filter_by_tier_status_and_label(self, operator: Any, enrolled: Any) -> None:
        device, _ = enrolled
        Device.objects.filter(pk=device.pk).update(labels={"site": "north"})
        client = client_for(operator)
        assert client.get(self.url, {"tier": "end"}).json()["count"] == 1
        assert client.get(self.url, {"tier": "cloud"}).json()["count"] == 0
        assert client.get(self.url, {"status": "pending"}).json()["count"] == 1
        assert client.get(self.url, {"label": "site=north"}).json()["count"] == 1
        assert client.get(self.url, {"label": "site=south"}).json()["count"] == 0

    def test_bad_filter_names_field(self, operator: Any, enrolled: Any) -> None:
        response = client_for(operator).get(self.url, {"tier": "moon"})
        assert response.status_code == 400
        assert "tier" in response.json()

    def test_retire_revokes_credential(
        self, operator: Any, enrolled: Any, agent_client: Any
    ) -> None:
        device, _ = enrolled
        response = client_for(operator).post(f"{self.url}{device.id}/retire/", {}, format="json")
        assert response.status_code == 200
        assert response.json()["status"] == DeviceStatus.RETIRED
        assert agent_client.post("/api/v1/agents/heartbeat/", {}, format="json").status_code == 401
        changes = client_for(operator).get(f"{self.url}{device.id}/status-changes/").json()
        assert changes[0]["to_status"] == "retired"

    def test_unknown_device_is_404(self, operator: Any) -> None:
        response = client_for(operator).get(f"{self.url}00000000-0000-0000-0000-000000000000/")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    def test_telemetry_range(self, operator: Any, enrolled: Any) -> None:
        device, _ = enrolled
        now = timezone.now()
        samples = [{"ts": now - timedelta(minutes=m), "cpu_percent": float(m)} for m in range(10)]
        record_heartbeat(device.id, samples)
        url = f"{self.url}{device.id}/telemetry/"
        since = (now - timedelta(minutes=4, seconds=30)).isoformat()
        body = client_for(operator).get(url, {"since": since}).json()
        assert [row["cpu_percent"] for row in body] == [4.0, 3.0, 2.0, 1.0, 0.0]
        assert len(client_for(operator).get(url, {"limit": 3}).json()) == 3

    def test_telemetry_bad_range_names_field(self, operator: Any, enrolled: Any) -> None:
        device, _ = enrolled
        url = f"{self.url}{device.id}/telemetry/"
        client = client_for(operator)
        assert "since" in client.get(url, {"since": "yesterday"}).json()
        assert "limit" in client.get(url, {"limit": 0}).json()
        bad = client.get(url, {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
        assert bad.status_code == 400 and "until" in bad.json()


class TestEnrollmentTokenAPI(RoleMixin, ListMixin, CreateMixin):
    url = "/api/v1/enrollment-tokens/"
    fixture_name = "enrollment_secret"
    model = EnrollmentToken
    valid_create = {"name": "north junction", "uses": 3, "expires_in_s": 7200}
    invalid_create = [
        ({"uses": 0}, "uses"),
        ({"uses": "many"}, "uses"),
        ({"expires_in_s": 5}, "expires_in_s"),
        ({"name": "x" * 101}, "name"),
    ]

    def test_token_shown_once_and_hash_stored(self, operator: Any) -> None:
        body = client_for(operator).post(self.url, self.valid_create, format="json").json()
        assert body["token"].startswith("tet_")
        token = EnrollmentToken.objects.get(pk=body["id"])
        assert body["token"] not in token.token_hash
        assert token.created_by == operator and token.max_uses == 3
        listed = client_for(operator).get(f"{self.url}{token.id}/").json()
        assert "token" not in listed and "token_hash" not in listed

    def test_revoke(self, operator: Any) -> None:
        body = client_for(operator).post(self.url, self.valid_create, format="json").json()
        revoked = client_for(operator).post(f"{self.url}{body['id']}/revoke/").json()
        assert revoked["state"] == "revoked"


class TestNetworkLinkAPI(RoleMixin, CreateMixin):
    url = "/api/v1/links/"
    model = NetworkLink
    valid_create = {"src_tier": "edge", "dst_tier": "cloud", "bandwidth_mbps": 100, "rtt_ms": 20}
    invalid_create = [
        ({"src_tier": "edge", "bandwidth_mbps": 100, "rtt_ms": 20}, "dst_device"),
        (
            {"src_tier": "edge", "dst_tier": "cloud", "bandwidth_mbps": -1, "rtt_ms": 20},
            "bandwidth_mbps",
        ),
        ({"src_tier": "mars", "dst_tier": "cloud", "bandwidth_mbps": 1, "rtt_ms": 2}, "src_tier"),
    ]

    def test_edit_link(self, operator: Any) -> None:
        created = client_for(operator).post(self.url, self.valid_create, format="json").json()
        response = client_for(operator).patch(
            f"{self.url}{created['id']}/", {"rtt_ms": 35}, format="json"
        )
        assert response.status_code == 200, response.json()
        assert NetworkLink.objects.get(pk=created["id"]).rtt_ms == 35

    def test_duplicate_link_refused(self, operator: Any) -> None:
        client = client_for(operator)
        assert client.post(self.url, self.valid_create, format="json").status_code == 201
        response = client.post(self.url, self.valid_create, format="json")
        assert response.status_code == 400
        assert "already exists" in response.json()["non_field_errors"][0]
        assert NetworkLink.objects.count() == 1
