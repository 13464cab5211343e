"""Console pages. Thin: reads come from `frontend.queries`, writes go through `devices.actions`."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import posixpath
import shlex
from functools import cache
from pathlib import Path
from uuid import UUID

import plotly
from django.contrib import messages
from django.contrib.staticfiles import finders
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import http_date
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django.views.static import was_modified_since

from devices import actions
from devices.models import Device, DeviceStatus, EnrollmentToken
from frontend import deployment_queries, queries
from frontend.decorators import operator_required
from frontend.forms import EnrollmentTokenForm

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_VERSION = plotly.__version__
# The order an operator reads the fleet's health in.
COUNTED_STATUSES = [
    DeviceStatus.ONLINE,
    DeviceStatus.OFFLINE,
    DeviceStatus.PENDING,
    DeviceStatus.RETIRED,
]


@operator_required
def fleet(request: HttpRequest) -> HttpResponse:
    tiers, counts = queries.fleet_by_tier()
    context = {
        "tiers": tiers,
        "counts": [(s.value, s.label, counts[s.value]) for s in COUNTED_STATUSES],
    }
    return render(request, "frontend/fleet.html", context)


@operator_required
def device_detail(request: HttpRequest, device_id: UUID) -> HttpResponse:
    device = get_object_or_404(Device, pk=device_id)
    context = {
        "device": device,
        "history": device.status_changes.all()[:50],
        "telemetry": queries.recent_telemetry(device),
        "plotly_version": PLOTLY_VERSION,
        "active_model": deployment_queries.active_model(device),
        "rollouts": deployment_queries.device_rollouts(device),
    }
    return render(request, "frontend/device.html", context)


@operator_required
@require_POST
def device_retire(request: HttpRequest, device_id: UUID) -> HttpResponse:
    device = get_object_or_404(Device, pk=device_id)
    actions.retire_device(device, reason=f"retired by {request.user.get_username()}")
    messages.success(request, f"{device.name} is retired; its credential no longer works.")
    return redirect("device", device_id=device.id)


@operator_required
@require_http_methods(["GET", "HEAD", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = EnrollmentTokenForm(request.POST if request.method == "POST" else None)
    created = None
    if form.is_bound and form.is_valid():
        token, secret = actions.create_enrollment_token(
            created_by=request.user,
            name=form.cleaned_data["name"],
            max_uses=form.cleaned_data["uses"],
            ttl=form.ttl(),
        )
        server = request.build_absolute_uri("/").rstrip("/")
        command = ["python", "-m", "edge_agent", "enroll", "--server", server, "--token", secret]
        created = {"token": token, "secret": secret, "command": shlex.join(command)}
        form = EnrollmentTokenForm()
    context = {"form": form, "created": created, "tokens": queries.recent_tokens()}
    response = render(request, "frontend/tokens.html", context, status=400 if form.errors else 200)
    if created:
        # The secret is on this page only; keep it out of every cache.
        response["Cache-Control"] = "no-store"
    return response


@operator_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(EnrollmentToken, pk=token_id)
    actions.revoke_enrollment_token(token)
    messages.success(
        request, f"Token {token.prefix}… is revoked. Devices that already enrolled keep working."
    )
    return redirect("tokens")


# --- assets -------------------------------------------------------------------------------
@cache
def _plotly_bodies() -> tuple[bytes, bytes, str]:
    raw = PLOTLY_JS.read_bytes()
    return raw, gzip.compress(raw, 6), f'"{hashlib.sha256(raw).hexdigest()[:32]}"'


@require_safe
def plotly_js(request: HttpRequest) -> HttpResponse:
    """plotly.js from the installed `plotly` package: fleets run air-gapped, so no CDN.

    Pages ask for it with `?v=<version>`, so it can be cached for a year.
    """
    raw, packed, etag = _plotly_bodies()
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified(headers={"ETag": etag})
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    response = HttpResponse(packed if gzipped else raw, content_type="text/javascript")
    if gzipped:
        response["Content-Encoding"] = "gzip"
    response["ETag"] = etag
    response["Vary"] = "Accept-Encoding"
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@require_safe
def static_file(request: HttpRequest, path: str) -> HttpResponse:
    """Serve a static file found by the staticfiles finders, with DEBUG on or off.

    uvicorn serves no files itself, and Django's own static view refuses to run without
    DEBUG. The finders only look inside the apps' static/ folders (and refuse paths that
    climb out of them), so nothing else on disk can be reached. The body is read into
    memory because Django would do so anyway for a sync file iterator under ASGI; these
    files are small.
    """
    normalized = posixpath.normpath(path).lstrip("/")
    if normalized.startswith("..") or "\\" in normalized:
        raise Http404("No such file.")
    found = finders.find(normalized)
    if not found or not Path(found).is_file():
        raise Http404("No such file.")
    file = Path(found)
    mtime = file.stat().st_mtime
    if not was_modified_since(request.headers.get("If-Modified-Since"), int(mtime)):
        return HttpResponseNotModified()
    content_type, encoding = mimetypes.guess_type(file.name)
    content_type = content_type or "application/octet-stream"
    response = HttpResponse(file.read_bytes(), content_type=content_type)
    if encoding:
        response["Content-Encoding"] = encoding
    response["Last-Modified"] = http_date(mtime)
    # Revalidate every time (cheap: 304) so a new release never runs with stale CSS or JS.
    response["Cache-Control"] = "no-cache"
    return response
