"""Console pages: role checks, server-rendered content, and every form's good and bad input."""

from __future__ import annotations

import gzip
import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from devices.actions import (
    HardwareProfile,
    create_enrollment_token,
    enroll_device,
    record_heartbeat,
)
from devices.credentials import hash_secret
from devices.models import Device, DeviceStatus, EnrollmentToken
from tests.conftest import HARDWARE
from tests.frontend.pages import PageRoleTests, logged_in

PAGES = ["fleet", "tokens", "device"]


@pytest.fixture
def urls(enrolled: tuple[Device, str]) -> dict[str, str]:
    return {"fleet": "/", "tokens": "/tokens/", "device": f"/devices/{enrolled[0].id}/"}


def sample(**changes: Any) -> dict[str, Any]:
    return {
        "ts": timezone.now(),
        "cpu_percent": 42.5,
        "memory_percent": 61.0,
        "power_w": 7.25,
        "energy_j": 1234.0,
        **changes,
    }


def find(pattern: str, html: str) -> str:
    match = re.search(pattern, html, re.S)
    assert match, f"nothing matches {pattern!r}"
    return match.group(0)


def section(html: str, element_id: str) -> str:
    return find(rf'<section[^>]*id="{element_id}".*?</section>', html)


# --- roles -------------------------------------------------------------------------------
class TestFleetPageRoles(PageRoleTests):
    pages = PAGES


@pytest.mark.parametrize("page", PAGES)
def test_operators_see_every_page(operator: Any, urls: dict[str, str], page: str) -> None:
    response = logged_in(operator).get(urls[page])
    assert response.status_code == 200
    body = response.content.decode()
    assert ">op<" in body and ">operator<" in body
    assert 'href="/api/docs/"' in body and 'action="/logout/"' in body


def test_only_admins_get_the_admin_link(operator: Any, admin_user: Any) -> None:
    assert b'href="/admin/"' in logged_in(admin_user).get("/").content
    assert b'href="/admin/"' not in logged_in(operator).get("/").content


def test_login_page_logs_in_and_names_a_bad_password(client: Client, operator: Any) -> None:
    response = client.post("/login/", {"username": "op", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    response = client.post("/login/", {"username": "op", "password": "correct-horse-battery"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_logout_is_a_post(operator: Any) -> None:
    client = logged_in(operator)
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


# --- fleet -------------------------------------------------------------------------------
def test_fleet_groups_devices_by_tier_with_counts(operator: Any, enrolled: Any) -> None:
    _, secret = create_enrollment_token(created_by=None, max_uses=5)
    hardware = HardwareProfile(**HARDWARE)
    gpu = enroll_device(token=secret, name="gpu-1", tier="cloud", hardware=hardware)[0]
    enroll_device(token=secret, name="mec-1", tier="edge", hardware=hardware)
    record_heartbeat(gpu.id, [sample()])

    html = logged_in(operator).get("/").content.decode()
    cloud, edge, end = (section(html, f"tier-{tier}") for tier in ("cloud", "edge", "end"))
    assert "gpu-1" in cloud and "mec-1" in edge and "cam-1" in end
    assert "gpu-1" not in end
    gpu_row = find(rf'<tr data-device-id="{gpu.id}".*?</tr>', cloud)
    assert "pill-online" in gpu_row and "42.5 %" in gpu_row and "61.0 %" in gpu_row
    assert "7.2 W" in gpu_row or "7.3 W" in gpu_row
    assert f'href="/devices/{gpu.id}/"' in gpu_row
    counts = dict(re.findall(r'data-status="(\w+)"><b>(\d+)</b>', html))
    assert counts == {"pending": "2", "online": "1", "offline": "0", "retired": "0"}


def test_empty_fleet_says_so(operator: Any) -> None:
    html = logged_in(operator).get("/").content.decode()
    assert "No cloud devices yet." in html


# --- device ------------------------------------------------------------------------------
def test_device_page_shows_profile_history_and_telemetry(operator: Any, enrolled: Any) -> None:
    device, _ = enrolled
    Device.objects.filter(pk=device.pk).update(labels={"site": "north"}, location="Main St")
    record_heartbeat(device.id, [sample(cpu_percent=11.0), sample(cpu_percent=22.0)])

    response = logged_in(operator).get(f"/devices/{device.id}/")
    body = response.content.decode()
    assert "site=north" in body and "Main St" in body and "25.0 GFLOPS" in body
    assert "heartbeat received" in body and "pill-online" in body
    data = response.context["telemetry"]
    assert data["cpu_percent"] == [11.0, 22.0] and len(data["ts"]) == 2
    assert '<script id="telemetry-data" type="application/json">' in body
    assert re.search(r'data-plotly-src="/static-vendor/plotly\.min\.js\?v=[\d.]+"', body)
    assert 'action="/devices/' in body  # the retire button


def test_unknown_device_is_404(operator: Any) -> None:
    response = logged_in(operator).get(f"/devices/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert b"Not found" in response.content


def test_retire_from_the_page(operator: Any, enrolled: Any) -> None:
    device, _ = enrolled
    client = logged_in(operator)
    response = client.post(f"/devices/{device.id}/retire/")
    assert response.status_code == 302 and response["Location"] == f"/devices/{device.id}/"
    device.refresh_from_db()
    assert device.status == DeviceStatus.RETIRED
    assert device.status_changes.get().reason == "retired by op"
    page = client.get(f"/devices/{device.id}/").content.decode()
    assert "is retired" in page and "Retire device" not in page


def test_retire_needs_post_and_a_role(operator: Any, nobody: Any, enrolled: Any) -> None:
    device, _ = enrolled
    assert logged_in(operator).get(f"/devices/{device.id}/retire/").status_code == 405
    assert logged_in(nobody).post(f"/devices/{device.id}/retire/").status_code == 403
    assert Client().post(f"/devices/{device.id}/retire/").status_code == 302
    device.refresh_from_db()
    assert device.status == DeviceStatus.PENDING


# --- tokens ------------------------------------------------------------------------------
def test_create_token_shows_it_once(operator: Any) -> None:
    client = logged_in(operator)
    response = client.post("/tokens/", {"name": "junction 4", "uses": "20", "expires": "7d"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = EnrollmentToken.objects.get()
    assert (token.name, token.max_uses, token.created_by) == ("junction 4", 20, operator)
    assert abs((token.expires_at - timezone.now()).total_seconds() - 7 * 86400) < 60
    secret = find(r'(?<=<code id="token-secret">)[^<]+', response.content.decode())
    assert hash_secret(secret) == token.token_hash
    command = f"python -m edge_agent enroll --server http://testserver --token {secret}"
    assert command in response.content.decode()
    assert secret not in client.get("/tokens/").content.decode()


@pytest.mark.parametrize(
    "data,field,message",
    [
        ({"uses": "0", "expires": "1h"}, "Uses", "greater than or equal to 1"),
        ({"uses": "100001", "expires": "1h"}, "Uses", "less than or equal to 100000"),
        ({"uses": "many", "expires": "1h"}, "Uses", "Enter a whole number"),
        ({"uses": "", "expires": "1h"}, "Uses", "This field is required"),
        ({"uses": "1", "expires": "2y"}, "Expires in", "Select a valid choice"),
        ({"uses": "1", "expires": "1h", "name": "x" * 101}, "Name", "at most 100 characters"),
    ],
)
def test_bad_token_input_names_the_field_and_creates_nothing(
    operator: Any, data: dict[str, str], field: str, message: str
) -> None:
    response = logged_in(operator).post("/tokens/", data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "No token was created" in body
    assert re.search(rf'class="field-error"[^>]*>{field}: [^<]*{message}', body), body
    assert not EnrollmentToken.objects.exists()


def test_token_list_and_revoke(operator: Any, nobody: Any) -> None:
    token, _ = create_enrollment_token(created_by=operator, name="cams", max_uses=3)
    client = logged_in(operator)
    row = find(r"<tr data-token-id=.*?</tr>", client.get("/tokens/").content.decode())
    assert f"{token.prefix}…" in row and "cams" in row and "0 / 3" in row and ">op<" in row
    assert "pill-token-active" in row

    assert logged_in(nobody).post(f"/tokens/{token.id}/revoke/").status_code == 403
    assert client.get(f"/tokens/{token.id}/revoke/").status_code == 405
    token.refresh_from_db()
    assert token.revoked_at is None

    response = client.post(f"/tokens/{token.id}/revoke/", follow=True)
    token.refresh_from_db()
    assert token.state == "revoked"
    assert "is revoked" in response.content.decode()
    assert client.post("/tokens/999999/revoke/").status_code == 404


# --- assets ------------------------------------------------------------------------------
def test_plotly_is_served_by_the_product(client: Client) -> None:
    response = client.get("/static-vendor/plotly.min.js?v=1")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript"
    assert "max-age=31536000" in response["Cache-Control"]
    assert b"plotly" in response.content[:2000].lower()

    packed = client.get("/static-vendor/plotly.min.js", HTTP_ACCEPT_ENCODING="gzip, br")
    assert packed["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.content) == response.content
    again = client.get("/static-vendor/plotly.min.js", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path,content_type",
    [
        ("/static/frontend/triad.css", "text/css"),
        ("/static/frontend/fleet.js", "text/javascript"),
        ("/static/admin/css/base.css", "text/css"),
    ],
)
def test_static_files_are_served_without_debug(
    client: Client, settings: Any, path: str, content_type: str
) -> None:
    settings.DEBUG = False
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert client.get(path, HTTP_IF_MODIFIED_SINCE=response["Last-Modified"]).status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/static/frontend/missing.css",
        "/static/../controlplane/settings.py",
        "/static/frontend/../../views.py",
        "/static/%2e%2e/%2e%2e/manage.py",
        "/static//etc/passwd",
    ],
)
def test_static_files_stay_inside_static_folders(client: Client, path: str) -> None:
    assert client.get(path).status_code in (400, 404)
