"""Model hub API: registered models and their versions, data sets, compression jobs and the
variants they make, with downloads of every file.

Operators and admins read and write everything. Models and data sets are uploaded as
multipart forms (their own body limit, TRIAD_MAX_MODEL_BYTES); jobs are JSON. Views
validate the request's shape and call actions, which do the writing.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api import Conflict, created, validated
from models_hub import actions
from models_hub.api import serializers as s
from models_hub.filtersets import (
    CompressionJobFilterSet,
    DatasetFilterSet,
    ModelArtifactFilterSet,
    VariantFilterSet,
)
from models_hub.models import CompressionJob, Dataset, ModelArtifact, Variant


class BinaryRenderer(BaseRenderer):
    """Lets a client ask for a download as application/octet-stream; errors are JSON."""

    media_type = "application/octet-stream"
    format = "bin"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> Any:
        return data if isinstance(data, bytes) else json.dumps(data).encode()


def download_schema() -> Any:
    return extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        summary="Download the file",
    )


def _refusal(error: actions.ModelHubError) -> exceptions.APIException:
    if isinstance(error, actions.ModelHubConflict):
        return Conflict(error.message)
    root, _, rest = (error.field or "non_field_errors").partition(".")
    # A parameter's error nests under `parameters`, as DRF nests a dict field's errors.
    detail: Any = {rest: [error.message]} if rest else [error.message]
    return exceptions.ValidationError({root: detail})


def _download(file: FieldFile) -> FileResponse:
    return FileResponse(
        file.open("rb"),
        as_attachment=True,
        filename=PurePath(file.name or "").name,
        content_type="application/octet-stream",
    )


def _name(given: str | None, file: Any, default: str) -> str:
    return given or PurePath(getattr(file, "name", "") or default).stem[:100] or default


# --- models -----------------------------------------------------------------------------
@extend_schema(tags=["models"])
class ModelArtifactViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Registered models. `?name=` lists the versions of one model."""

    queryset = ModelArtifact.objects.select_related("created_by")
    filterset_class = ModelArtifactFilterSet
    parser_classes = [MultiPartParser, FormParser]

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action == "create":
            return s.ModelArtifactUploadSerializer
        return s.ModelArtifactSerializer

    @extend_schema(
        request={"multipart/form-data": s.ModelArtifactUploadSerializer},
        responses={201: s.ModelArtifactSerializer},
        summary="Register a model file (validated first: refused files store nothing)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(s.ModelArtifactUploadSerializer, request.data)
        file = data["file"]
        try:
            artifact = actions.register_model(
                upload=file,
                name=_name(data.get("name"), file, "model"),
                version=data["version"],
                description=data["description"],
                task=data["task"],
                input_shape=data.get("input_shape"),
                created_by=request.user,
            )
        except actions.ModelHubError as error:
            raise _refusal(error) from error
        return created(s.ModelArtifactSerializer(artifact, context={"request": request}).data)

    def perform_destroy(self, instance: ModelArtifact) -> None:
        try:
            actions.delete_model(instance)
        except actions.ModelHubError as error:
            raise _refusal(error) from error

    @download_schema()
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, BinaryRenderer])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        return _download(self.get_object().file)

    @extend_schema(
        responses={200: s.ModelArtifactSerializer(many=True)},
        summary="Every version of this model's name, newest first",
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def versions(self, request: Request, pk: str | None = None) -> Response:
        name = self.get_object().name
        rows = self.get_queryset().filter(name=name).order_by("-created_at")
        return Response(
            s.ModelArtifactSerializer(rows, many=True, context={"request": request}).data
        )


# --- data sets --------------------------------------------------------------------------
@extend_schema(tags=["models"])
class DatasetViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Calibration, training and evaluation data sets (.npz)."""

    queryset = Dataset.objects.select_related("created_by")
    filterset_class = DatasetFilterSet
    parser_classes = [MultiPartParser, FormParser]

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action == "create":
            return s.DatasetUploadSerializer
        return s.DatasetSerializer

    @extend_schema(
        request={"multipart/form-data": s.DatasetUploadSerializer},
        responses={201: s.DatasetSerializer},
        summary="Upload a data set (validated first: refused files store nothing)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(s.DatasetUploadSerializer, request.data)
        file = data["file"]
        try:
            dataset = actions.register_dataset(
                upload=file,
                name=_name(data.get("name"), file, "data"),
                purpose=data["purpose"],
                description=data["description"],
                created_by=request.user,
            )
        except actions.ModelHubError as error:
            raise _refusal(error) from error
        return created(s.DatasetSerializer(dataset, context={"request": request}).data)

    def perform_destroy(self, instance: Dataset) -> None:
        try:
            actions.delete_dataset(instance)
        except actions.ModelHubError as error:
            raise _refusal(error) from error

    @download_schema()
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, BinaryRenderer])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        return _download(self.get_object().file)


# --- jobs -------------------------------------------------------------------------------
@extend_schema(tags=["models"])
class CompressionJobViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = CompressionJob.objects.select_related("model", "created_by")
    filterset_class = CompressionJobFilterSet

    def get_queryset(self) -> QuerySet[CompressionJob]:
        queryset = super().get_queryset()
        # The log and the report are for one job's page, not lists.
        return queryset.defer("log", "report") if self.action == "list" else queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        classes: dict[str, type[serializers.BaseSerializer[Any]]] = {
            "list": s.CompressionJobSerializer,
            "create": s.CompressionJobCreateSerializer,
            "variants": s.VariantSerializer,
        }
        return classes.get(self.action or "", s.CompressionJobDetailSerializer)

    @extend_schema(
        request=s.CompressionJobCreateSerializer,
        responses={201: s.CompressionJobDetailSerializer},
        summary="Submit a compression job (checked first: a refused job stores nothing)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(s.CompressionJobCreateSerializer, request.data)
        try:
            job = actions.submit_compression_job(created_by=request.user, **data)
        except actions.ModelHubError as error:
            raise _refusal(error) from error
        return created(s.CompressionJobDetailSerializer(job).data)

    @extend_schema(request=None, responses={200: s.CompressionJobDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._job_action(actions.request_cancel)

    @extend_schema(request=None, responses={200: s.CompressionJobDetailSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._job_action(actions.retry_job)

    def _job_action(self, change: Any) -> Response:
        try:
            job = change(self.get_object())
        except actions.ModelHubError as error:
            raise _refusal(error) from error
        return Response(s.CompressionJobDetailSerializer(job).data)

    @extend_schema(
        responses={200: s.VariantSerializer(many=True)},
        summary="The variants the job made, in the order of its report",
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def variants(self, request: Request, pk: str | None = None) -> Response:
        rows = self.get_object().variants.order_by("index")
        return Response(s.VariantSerializer(rows, many=True, context={"request": request}).data)


# --- variants ---------------------------------------------------------------------------
@extend_schema(tags=["models"])
class VariantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Variant.objects.all()
    serializer_class = s.VariantSerializer
    filterset_class = VariantFilterSet

    @download_schema()
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, BinaryRenderer])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        return _download(self.get_object().file)
