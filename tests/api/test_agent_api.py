"""Agent API: enrollment, heartbeats, credential rotation, and every bad input."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from devices.models import Device, DeviceStatus, EnrollmentToken, NetworkLink, Telemetry
from tests.conftest import HARDWARE

ENROLL = "/api/v1/agents/enroll/"
HEARTBEAT = "/api/v1/agents/heartbeat/"
ROTATE = "/api/v1/agents/rotate-credential/"


def enroll_body(secret: str, **changes: Any) -> dict[str, Any]:
    body = {
        "token": secret,
        "name": "cam-7",
        "tier": "end",
        "hardware": copy.deepcopy(HARDWARE),
        "labels": {"site": "north"},
        "location": "Main St",
    }
    body.update(changes)
    return body


def sample(**changes: Any) -> dict[str, Any]:
    row = {
        "ts": timezone.now().isoformat(),
        "cpu_percent": 12.5,
        "memory_percent": 40.0,
        "power_w": 4.2,
        "energy_j": 100.0,
        "inference_count": 3,
        "latency_p50_ms": 10.0,
        "latency_p95_ms": 20.0,
        "latency_p99_ms": 30.0,
        "metrics": {"accuracy": 0.97},
    }
    row.update(changes)
    return row


class TestEnroll:
    def test_enroll_returns_credential_once(self, enrollment_secret: str) -> None:
        response = APIClient().post(ENROLL, enroll_body(enrollment_secret), format="json")
        assert response.status_code == 201, response.json()
        body = response.json()
        device = Device.objects.get(pk=body["device_id"])
        assert device.status == DeviceStatus.PENDING and device.labels == {"site": "north"}
        assert body["credential"] not in device.credentials.get().key_hash
        assert EnrollmentToken.objects.get().use_count == 1

    @pytest.mark.parametrize(
        "state,message",
        [
            ("expired", "expired"),
            ("revoked", "revoked"),
            ("used", "no uses left"),
        ],
    )
    def test_spent_tokens_are_refused(
        self, enrollment_secret: str, state: str, message: str
    ) -> None:
        token = EnrollmentToken.objects.get()
        if state == "expired":
            token.expires_at = timezone.now() - timedelta(seconds=1)
        elif state == "revoked":
            token.revoked_at = timezone.now()
        else:
            token.use_count = token.max_uses
        token.save()
        response = APIClient().post(ENROLL, enroll_body(enrollment_secret), format="json")
        assert response.status_code == 400
        assert message in response.json()["token"][0]
        assert Device.objects.count() == 0

    def test_uses_run_out(self, db: Any) -> None:
        from devices.actions import create_enrollment_token

        _, secret = create_enrollment_token(created_by=None, max_uses=2)
        codes = [
            APIClient().post(ENROLL, enroll_body(secret), format="json").status_code
            for _ in range(3)
        ]
        assert codes == [201, 201, 400]
        assert Device.objects.count() == 2

    @pytest.mark.parametrize(
        "change,field",
        [
            ({"token": "tet_wrong"}, "token"),
            ({"tier": "moon"}, "tier"),
            ({"name": ""}, "name"),
            ({"hardware": {**HARDWARE, "cpu_cores": 0}}, "hardware"),
            ({"hardware": {**HARDWARE, "gflops": -1}}, "hardware"),
            ({"hardware": {**HARDWARE, "power_busy_w": 1.0}}, "hardware"),
            ({"labels": {"": "x"}}, "labels"),
            ({"labels": ["not", "a", "map"]}, "labels"),
        ],
    )
    def test_bad_enrollment_names_field(
        self, enrollment_secret: str, change: dict[str, Any], field: str
    ) -> None:
        response = APIClient().post(ENROLL, enroll_body(enrollment_secret, **change), format="json")
        assert response.status_code == 400
        assert field in response.json()
        assert Device.objects.count() == 0
        assert EnrollmentToken.objects.get().use_count == 0

    def test_non_object_body(self, db: Any) -> None:
        response = APIClient().post(ENROLL, [1, 2], format="json")
        assert response.status_code == 400
        assert "non_field_errors" in response.json()

    def test_malformed_json(self, db: Any) -> None:
        response = APIClient().post(ENROLL, "{not json", content_type="application/json")
        assert response.status_code == 400
        assert "JSON parse error" in response.json()["detail"]


class TestHeartbeat:
    def test_heartbeat_stores_samples_and_goes_online(
        self, agent_client: Any, enrolled: Any
    ) -> None:
        device, _ = enrolled
        body = {
            "telemetry": [sample(cpu_percent=10), sample(cpu_percent=20)],
            "links": [{"to": "cloud", "bandwidth_mbps": 80, "rtt_ms": 25}],
        }
        response = agent_client.post(HEARTBEAT, body, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["accepted"] == 2
        assert (
            response.json()["desired_state"]["heartbeat_interval_s"] == device.heartbeat_interval_s
        )
        device.refresh_from_db()
        assert device.status == DeviceStatus.ONLINE
        assert device.offline_after > device.last_heartbeat_at
        assert Telemetry.objects.filter(device=device).count() == 2
        assert device.status_changes.get().to_status == DeviceStatus.ONLINE
        assert NetworkLink.objects.get().dst_tier == "cloud"

    def test_resent_samples_are_stored_once(self, agent_client: Any) -> None:
        body = {"telemetry": [sample()]}
        for _ in range(2):  # the agent resends when it never saw the first answer
            assert agent_client.post(HEARTBEAT, body, format="json").status_code == 200
        assert Telemetry.objects.count() == 1

    def test_missing_readings_keep_the_previous_ones(self, agent_client: Any) -> None:
        agent_client.post(HEARTBEAT, {"telemetry": [sample(power_w=5.0)]}, format="json")
        partial = {"ts": timezone.now().isoformat(), "cpu_percent": 70.0}
        agent_client.post(HEARTBEAT, {"telemetry": [partial]}, format="json")
        device = Device.objects.get()
        assert device.last_cpu_percent == 70.0 and device.last_power_w == 5.0

    def test_agent_api_speaks_json_only(self, agent_client: Any) -> None:
        response = agent_client.post(HEARTBEAT, {}, format="json", HTTP_ACCEPT="text/html")
        assert response.status_code == 406
        assert response.json()["code"] == "not_acceptable"

    def test_empty_heartbeat_is_keep_alive(self, agent_client: Any) -> None:
        response = agent_client.post(HEARTBEAT, {}, format="json")
        assert response.status_code == 200 and response.json()["accepted"] == 0

    @pytest.mark.parametrize(
        "bad,field",
        [
            ({"cpu_percent": 101}, "cpu_percent"),
            ({"memory_percent": -1}, "memory_percent"),
            ({"power_w": -0.5}, "power_w"),
            ({"energy_j": -3}, "energy_j"),
            ({"inference_count": -1}, "inference_count"),
            ({"latency_p95_ms": -1}, "latency_p95_ms"),
            ({"ts": "not a time"}, "ts"),
            ({"ts": None}, "ts"),
            ({"cpu_percent": "lots"}, "cpu_percent"),
            ({"energy_j": 10**400}, "energy_j"),
            ({"metrics": {"note": "a\x00b"}}, "metrics"),
        ],
    )
    def test_bad_sample_names_field_and_stores_nothing(
        self, agent_client: Any, bad: dict[str, Any], field: str
    ) -> None:
        body = {"telemetry": [sample(), sample(**bad)]}
        response = agent_client.post(HEARTBEAT, body, format="json")
        assert response.status_code == 400
        errors = response.json()["telemetry"]
        assert errors[0] == {} and field in errors[1]
        assert Telemetry.objects.count() == 0
        assert Device.objects.get().status == DeviceStatus.PENDING

    def test_infinite_reading_refused(self, agent_client: Any) -> None:
        body = '{"telemetry": [{"ts": "' + timezone.now().isoformat() + '", "energy_j": 1e400}]}'
        response = agent_client.post(HEARTBEAT, body, content_type="application/json")
        assert response.status_code == 400
        assert "finite" in response.json()["telemetry"][0]["energy_j"][0]
        assert Telemetry.objects.count() == 0

    def test_unpaired_surrogate_in_metrics_refused(self, agent_client: Any) -> None:
        ts = timezone.now().isoformat()
        body = '{"telemetry": [{"ts": "' + ts + '", "metrics": {"note": "\\ud800"}}]}'
        response = agent_client.post(HEARTBEAT, body, content_type="application/json")
        assert response.status_code == 400 and "metrics" in response.json()["telemetry"][0]
        assert Telemetry.objects.count() == 0

    def test_non_utf8_credential_refused(self, db: Any) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=b"Bearer dev_\xff\xfe".decode("latin-1"))
        assert client.post(HEARTBEAT, {}, format="json").status_code == 401

    def test_future_timestamp_refused(self, agent_client: Any) -> None:
        future = (timezone.now() + timedelta(hours=1)).isoformat()
        response = agent_client.post(HEARTBEAT, {"telemetry": [sample(ts=future)]}, format="json")
        assert response.status_code == 400
        assert "future" in response.json()["telemetry"][0]["ts"][0]
        assert Telemetry.objects.count() == 0

    def test_batch_too_long(self, agent_client: Any, settings: Any) -> None:
        settings.TRIAD_MAX_TELEMETRY_BATCH = 3
        response = agent_client.post(HEARTBEAT, {"telemetry": [sample()] * 4}, format="json")
        assert response.status_code == 400 and "telemetry" in response.json()
        assert Telemetry.objects.count() == 0

    def test_oversized_body_refused(self, agent_client: Any, settings: Any) -> None:
        settings.TRIAD_MAX_BODY_BYTES = 2048
        body = {"telemetry": [sample(metrics={"blob": "x" * 4096})]}
        response = agent_client.post(HEARTBEAT, body, format="json")
        assert response.status_code == 413
        assert response.json()["code"] == "request_too_large"
        assert Telemetry.objects.count() == 0

    def test_bad_link_names_field(self, agent_client: Any) -> None:
        body = {
            "links": [
                {"to": "00000000-0000-0000-0000-000000000000", "bandwidth_mbps": 1, "rtt_ms": 1}
            ]
        }
        response = agent_client.post(HEARTBEAT, body, format="json")
        assert response.status_code == 400 and "to" in response.json()["links"][0]

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer dev_nonsense",
            "Bearer dev_00000000000000000000000000000000.secret",
            "Bearer",
        ],
    )
    def test_bad_credentials(self, db: Any, header: str) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.post(HEARTBEAT, {"telemetry": [sample()]}, format="json")
        assert response.status_code == 401
        assert response.json()["code"] == "authentication_failed"
        assert Telemetry.objects.count() == 0

    def test_wrong_secret_for_real_device(self, enrolled: Any) -> None:
        _, credential = enrolled
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential[:-4]}abcd")
        assert client.post(HEARTBEAT, {}, format="json").status_code == 401

    def test_no_credential(self, db: Any) -> None:
        response = APIClient().post(HEARTBEAT, {}, format="json")
        assert response.status_code in (401, 403)

    def test_operator_session_cannot_heartbeat(self, operator_client: Any) -> None:
        assert operator_client.post(HEARTBEAT, {}, format="json").status_code == 403


class TestRotate:
    def test_rotation_revokes_old_credential(self, agent_client: Any, enrolled: Any) -> None:
        response = agent_client.post(ROTATE)
        assert response.status_code == 200
        new = response.json()["credential"]
        assert agent_client.post(HEARTBEAT, {}, format="json").status_code == 401
        fresh = APIClient()
        fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {new}")
        assert fresh.post(HEARTBEAT, {}, format="json").status_code == 200
