"""Rollout API: operators create, watch, pause, resume and abort deployments; agents
report their model status and download the artifacts their orders name."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api import Conflict, created, validated
from deployments import actions
from deployments.api import serializers as s
from deployments.filtersets import DeploymentFilterSet
from deployments.models import Deployment, ProfilingRun, SignedManifest
from devices.api.views import AgentView

CHUNK_BYTES = 1 << 20
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _refusal(error: actions.DeploymentError) -> exceptions.APIException:
    if isinstance(error, actions.DeploymentConflict):
        return Conflict(error.message)
    return exceptions.ValidationError({error.field or "non_field_errors": [error.message]})


# --- operators --------------------------------------------------------------------------
@extend_schema(tags=["deployments"])
class DeploymentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Deployments and their rollouts. Creating one releases its canary at once."""

    queryset = Deployment.objects.select_related("model", "variant", "manifest")
    filterset_class = DeploymentFilterSet
    serializer_class = s.DeploymentSerializer

    @extend_schema(
        request=s.DeploymentCreateSerializer,
        responses={201: s.DeploymentSerializer},
        summary="Deploy a model or variant to devices, canary first",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(s.DeploymentCreateSerializer, request.data)
        selector = actions.TargetSelector(
            kind=data["target_kind"],
            devices=data["devices"],
            tier=data.get("tier") or "",
            labels=data["labels"],
            decision=data["decision"],
            tasks=data["tasks"],
        )
        policy = actions.RolloutPolicy(
            canary_percent=data["canary_percent"],
            batch_percent=data["batch_percent"],
            max_failed_percent=data["max_failed_percent"],
            device_timeout_s=data["device_timeout_s"],
            latency_budget_ms=data["latency_budget_ms"],
        )
        try:
            deployment = actions.create_deployment(
                model=data["model"],
                variant=data["variant"],
                selector=selector,
                policy=policy,
                created_by=request.user,
                name=data["name"],
            )
        except actions.DeploymentError as error:
            raise _refusal(error) from error
        return created(self.get_serializer(deployment).data)

    def _act(self, change: Any, **kwargs: Any) -> Response:
        try:
            deployment = change(self.get_object(), **kwargs)
        except actions.DeploymentError as error:
            raise _refusal(error) from error
        return Response(self.get_serializer(deployment).data)

    @extend_schema(request=None, summary="Release no further phase")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._act(actions.pause_deployment)

    @extend_schema(request=None, summary="Release phases again")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._act(actions.resume_deployment)

    @extend_schema(request=None, summary="Stop and roll every released device back")
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, pk: str | None = None) -> Response:
        return self._act(actions.abort_deployment, by=request.user)

    @extend_schema(responses={200: s.DeploymentTargetSerializer(many=True)})
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def targets(self, request: Request, pk: str | None = None) -> Response:
        """Each device's part: phase, state, download progress, failure reason."""
        targets = self.get_object().targets.select_related("device")
        return Response(s.DeploymentTargetSerializer(targets, many=True).data)


@extend_schema(tags=["deployments"])
class ProfilingRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Hardware-in-the-loop profiling: agents time a model on their own hardware."""

    queryset = ProfilingRun.objects.prefetch_related("targets__device")
    serializer_class = s.ProfilingRunSerializer
    filterset_fields = ["model", "variant", "finished"]

    @extend_schema(
        request=s.ProfilingRunCreateSerializer,
        responses={201: s.ProfilingRunSerializer},
        summary="Ask chosen agents to measure a model's or variant's latency",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(s.ProfilingRunCreateSerializer, request.data)
        try:
            run = actions.start_profiling(
                model=data["model"],
                variant=data["variant"],
                devices=data["devices"],
                runs=data["runs"],
                timeout_s=data["timeout_s"],
                created_by=request.user,
            )
        except actions.DeploymentError as error:
            raise _refusal(error) from error
        return created(self.get_serializer(run).data)


# --- agents -----------------------------------------------------------------------------
class ModelStatusView(AgentView):
    @extend_schema(
        request=s.ModelStatusSerializer,
        responses={200: s.ModelStatusAnswerSerializer},
        tags=["agents"],
        summary="Report the state of a model order (downloading, active, failed...)",
    )
    def post(self, request: Request) -> Response:
        data = validated(s.ModelStatusSerializer, request.data)
        active = data["active"] or {}
        report = actions.StatusReport(
            deployment_id=data["deployment_id"],
            version=data["version"],
            state=data["state"],
            progress=data["progress"],
            reason=data["reason"],
            detail=data["detail"],
            active_sha256=active.get("sha256"),
            active_version=active.get("version"),
        )
        try:
            target = actions.record_model_status(self.agent(request).device, report)
        except actions.DeploymentError as error:
            raise _refusal(error) from error
        return Response({"state": target.state})


class ProfileResultView(AgentView):
    @extend_schema(
        request=s.ProfileResultSerializer,
        responses={200: s.ModelStatusAnswerSerializer},
        tags=["agents"],
        summary="Report a profiling result (or why there is none)",
    )
    def post(self, request: Request) -> Response:
        data = validated(s.ProfileResultSerializer, request.data)
        report = actions.ProfileReport(**data)
        try:
            target = actions.record_profile_result(self.agent(request).device, report)
        except actions.DeploymentError as error:
            raise _refusal(error) from error
        return Response({"state": target.state})


class ArtifactView(AgentView):
    """The bytes of an artifact that an order of the device's own names; `Range` resumes."""

    @extend_schema(
        parameters=[OpenApiParameter("Range", str, OpenApiParameter.HEADER, required=False)],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (206, "application/octet-stream"): OpenApiTypes.BINARY,
        },
        tags=["agents"],
        summary="Download an artifact (resumable with Range: bytes=N-)",
    )
    def get(self, request: Request, sha256: str) -> HttpResponseBase:
        device = self.agent(request).device
        path = self._ordered_file([device.desired_model, device.desired_profile], sha256)
        # The bytes take seconds to stream and need no database: give the connection back
        # to the pool now, not when the response ends (100 agents downloading at once
        # otherwise hold 100 connections, and every other request waits for one).
        if not connection.in_atomic_block:
            connection.close()
        size = path.stat().st_size
        start, end = _byte_range(request.headers.get("Range", ""), size)
        if start >= size and size > 0:
            refused = HttpResponse(status=416)
            refused["Content-Range"] = f"bytes */{size}"
            return refused
        ranged = request.headers.get("Range") is not None and (start, end) != (0, size - 1)
        response = StreamingHttpResponse(
            _read_async(path, start, end + 1),
            status=206 if ranged else 200,
            content_type="application/octet-stream",
        )
        response["Content-Length"] = str(end + 1 - start)
        response["Accept-Ranges"] = "bytes"
        response["ETag"] = f'"{sha256}"'
        if ranged:
            response["Content-Range"] = f"bytes {start}-{end}/{size}"
        return response

    @staticmethod
    def _ordered_file(orders: list[Any], sha256: str) -> Path:
        """The file, if one of the device's orders (install, rollback, profiling) names it."""
        for order in orders:
            signed = (order or {}).get("manifest", {}).get("signed", {})
            if (signed.get("artifact") or {}).get("sha256") != sha256:
                continue
            manifest = SignedManifest.objects.filter(pk=signed.get("version")).first()
            if manifest is None or not manifest.file_name:
                raise exceptions.NotFound("The artifact is no longer stored.")
            return Path(default_storage.path(manifest.file_name))
        raise exceptions.NotFound("No order of this device names this artifact.")


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte to send. A header this does not understand means the whole file,
    as RFC 9110 says; a start past the end is the caller's 416."""
    match = RANGE.match(header.strip())
    if not match:
        return 0, size - 1
    start = int(match.group(1))
    if start >= size:
        return start, size - 1
    end = int(match.group(2)) if match.group(2) else size - 1
    if end < start:
        return 0, size - 1
    return start, min(end, size - 1)


async def _read_async(path: Path, start: int, stop: int) -> AsyncIterator[bytes]:
    """The bytes [start, stop) in chunks, read off the event loop. An async iterator, so
    that Django's ASGI handler streams it instead of reading the whole file into memory."""
    with path.open("rb") as handle:
        handle.seek(start)
        left = stop - start
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
