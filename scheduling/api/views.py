"""Scheduling API: workloads, jobs and their solutions, decisions and their review.

Operators read everything and create workloads, jobs and proposals; only admins approve
or reject. Views validate the request's shape and call actions, which do the writing.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api import Conflict, created, validated
from controlplane.permissions import IsAdmin
from scheduling import actions
from scheduling.api import serializers as s
from scheduling.filtersets import (
    DecisionFilterSet,
    SchedulingJobFilterSet,
    SolutionFilterSet,
    WorkloadFilterSet,
)
from scheduling.models import Decision, SchedulingJob, Solution, SolutionKind, Workload
from scheduling.templates import TEMPLATES


def _refusal(error: actions.SchedulingError) -> exceptions.APIException:
    if isinstance(error, actions.NotAllowed):
        return exceptions.PermissionDenied(error.message)
    if isinstance(error, actions.SchedulingConflict):
        return Conflict(error.message)
    return exceptions.ValidationError({error.field or "non_field_errors": [error.message]})


# --- workloads --------------------------------------------------------------------------
@extend_schema(tags=["scheduling"])
class WorkloadViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Workload.objects.select_related("created_by")
    filterset_class = WorkloadFilterSet

    def get_queryset(self) -> QuerySet[Workload]:
        queryset = super().get_queryset()
        # A document can hold thousands of tasks; lists never show it.
        return queryset.defer("document") if self.action == "list" else queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        classes: dict[str, type[serializers.BaseSerializer[Any]]] = {
            "retrieve": s.WorkloadDetailSerializer,
            "create": s.WorkloadCreateSerializer,
            "upload": s.WorkloadUploadSerializer,
            "templates": s.WorkloadTemplateSerializer,
        }
        return classes.get(self.action or "", s.WorkloadSerializer)

    @extend_schema(request=s.WorkloadCreateSerializer, responses={201: s.WorkloadDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(s.WorkloadCreateSerializer, request.data)
        common = {
            "name": data["name"],
            "description": data["description"],
            "created_by": request.user,
        }
        try:
            if "template" in data:
                workload = actions.create_workload_from_template(
                    template=data["template"], parameters=data["parameters"], **common
                )
            else:
                workload = actions.create_workload_from_document(
                    document=data["document"], **common
                )
        except actions.SchedulingError as error:
            raise _refusal(error) from error
        return created(s.WorkloadDetailSerializer(workload).data)

    def perform_destroy(self, instance: Workload) -> None:
        try:
            actions.delete_workload(instance)
        except actions.SchedulingError as error:
            raise _refusal(error) from error

    @extend_schema(
        request={"multipart/form-data": s.WorkloadUploadSerializer},
        responses={201: s.WorkloadDetailSerializer},
        summary="Upload a problem or WfFormat JSON file as a workload",
    )
    @action(detail=False, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def upload(self, request: Request) -> Response:
        data = validated(s.WorkloadUploadSerializer, request.data)
        file = data["file"]
        try:
            workload = actions.create_workload_from_file(
                name=data.get("name") or PurePath(file.name or "workload").stem[:100],
                description=data["description"],
                file=file,
                created_by=request.user,
            )
        except actions.SchedulingError as error:
            raise _refusal(error) from error
        return created(s.WorkloadDetailSerializer(workload).data)

    @extend_schema(responses={200: s.WorkloadTemplateSerializer(many=True)})
    @action(detail=False, methods=["get"], pagination_class=None, filterset_class=None)
    def templates(self, request: Request) -> Response:
        return Response(s.WorkloadTemplateSerializer(TEMPLATES.values(), many=True).data)


# --- jobs -------------------------------------------------------------------------------
@extend_schema(tags=["scheduling"])
class SchedulingJobViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = SchedulingJob.objects.select_related("workload", "created_by")
    filterset_class = SchedulingJobFilterSet

    def get_queryset(self) -> QuerySet[SchedulingJob]:
        queryset = super().get_queryset()
        # The problem, the per-generation history and the workload's graph are for one
        # job's page, not lists.
        if self.action == "list":
            return queryset.defer("problem", "history", "workload__document")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        classes: dict[str, type[serializers.BaseSerializer[Any]]] = {
            "list": s.SchedulingJobSerializer,
            "create": s.SchedulingJobCreateSerializer,
            "solutions": s.SolutionSummarySerializer,
        }
        return classes.get(self.action or "", s.SchedulingJobDetailSerializer)

    @extend_schema(
        request=s.SchedulingJobCreateSerializer, responses={201: s.SchedulingJobDetailSerializer}
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(s.SchedulingJobCreateSerializer, request.data)
        try:
            job = actions.submit_job(created_by=request.user, **data)
        except actions.SchedulingError as error:
            raise _refusal(error) from error
        return created(s.SchedulingJobDetailSerializer(job).data)

    @extend_schema(request=None, responses={200: s.SchedulingJobDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._job_action(actions.request_cancel)

    @extend_schema(request=None, responses={200: s.SchedulingJobDetailSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._job_action(actions.retry_job)

    def _job_action(self, change: Any) -> Response:
        try:
            job = change(self.get_object())
        except actions.SchedulingError as error:
            raise _refusal(error) from error
        return Response(s.SchedulingJobDetailSerializer(job).data)

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=SolutionKind.values)],
        responses={200: s.SolutionSummarySerializer(many=True)},
        summary="The job's front and baselines (objectives only; details per solution)",
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def solutions(self, request: Request, pk: str | None = None) -> Response:
        found = SolutionFilterSet(request.query_params, queryset=self.get_object().solutions.all())
        if not found.is_valid():
            raise exceptions.ValidationError(found.errors)
        rows = found.qs.defer("assignment", "timeline")
        return Response(s.SolutionSummarySerializer(rows, many=True).data)

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT},
        summary="The problem document the job solves (for `python -m scheduling solve`)",
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def problem(self, request: Request, pk: str | None = None) -> Response:
        return Response(self.get_object().problem)


@extend_schema(tags=["scheduling"])
class SolutionViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """One solution in full: its assignment and per-device timeline."""

    queryset = Solution.objects.all()
    serializer_class = s.SolutionSerializer


# --- decisions --------------------------------------------------------------------------
@extend_schema(tags=["scheduling"])
class DecisionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Decision.objects.select_related("solution", "proposed_by", "reviewed_by")
    serializer_class = s.DecisionSerializer
    filterset_class = DecisionFilterSet

    @extend_schema(request=s.DecisionProposeSerializer, responses={201: s.DecisionSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Propose a solution for approval."""
        data = validated(s.DecisionProposeSerializer, request.data)
        try:
            decision = actions.propose_decision(proposed_by=request.user, **data)
        except actions.SchedulingError as error:
            raise _refusal(error) from error
        return created(s.DecisionSerializer(decision).data)

    @extend_schema(request=s.DecisionApproveSerializer, responses={200: s.DecisionSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        data = validated(s.DecisionApproveSerializer, request.data)
        return self._review(actions.approve_decision, data["comment"])

    @extend_schema(request=s.DecisionRejectSerializer, responses={200: s.DecisionSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        data = validated(s.DecisionRejectSerializer, request.data)
        return self._review(actions.reject_decision, data["comment"])

    def _review(self, review: Any, comment: str) -> Response:
        try:
            decision = review(self.get_object(), reviewed_by=self.request.user, comment=comment)
        except actions.SchedulingError as error:
            raise _refusal(error) from error
        return Response(s.DecisionSerializer(decision).data)
