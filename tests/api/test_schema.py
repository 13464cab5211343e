"""The OpenAPI schema describes every endpoint and generates without warnings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient


def api_routes(patterns: list[Any], prefix: str = "") -> set[str]:
    routes: set[str] = set()
    for pattern in patterns:
        path = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes |= api_routes(pattern.url_patterns, path)
        elif isinstance(pattern, URLPattern) and path.startswith("api/v1/"):
            routes.add(path)
    return routes


def test_schema_generates_without_warnings(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out))
    assert out.stat().st_size > 1000


def test_schema_is_for_operators_only(db: Any) -> None:
    assert APIClient().get("/api/schema/").status_code in (401, 403)
    assert APIClient().get("/api/docs/").status_code in (401, 403)


def test_schema_lists_every_api_route(operator_client: Any) -> None:
    schema = operator_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    documented = set(schema.json()["paths"])
    expected = {
        "/api/v1/agents/enroll/",
        "/api/v1/agents/heartbeat/",
        "/api/v1/agents/rotate-credential/",
        "/api/v1/devices/",
        "/api/v1/devices/{id}/",
        "/api/v1/devices/{id}/retire/",
        "/api/v1/devices/{id}/telemetry/",
        "/api/v1/devices/{id}/status-changes/",
        "/api/v1/enrollment-tokens/",
        "/api/v1/enrollment-tokens/{id}/",
        "/api/v1/enrollment-tokens/{id}/revoke/",
        "/api/v1/links/",
        "/api/v1/links/{id}/",
    }
    assert expected <= documented
    # Every routed API view (ignoring DRF's format-suffix and root variants) is documented.
    routed = {r for r in api_routes(get_resolver().url_patterns) if "format" not in r}
    assert len(documented) >= len({r for r in routed if r != "api/v1/"})


def test_docs_page_served(operator_client: Any) -> None:
    assert operator_client.get("/api/docs/").status_code == 200


def test_docs_page_needs_no_cdn(operator_client: Any) -> None:
    page = operator_client.get("/api/docs/").content.decode()
    assert "cdn." not in page and "unpkg" not in page
    assert "/static/drf_spectacular_sidecar/" in page
    bundle = re.search(r'src="(/static/drf_spectacular_sidecar/[^"]+\.js)"', page)
    assert bundle is not None
    assert APIClient().get(bundle.group(1)).status_code == 200
