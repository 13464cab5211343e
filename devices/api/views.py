"""Agent API (enroll, heartbeat, rotate) and operator API (devices, telemetry, tokens, links)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.signing import keyring
from devices import actions
from devices.api import serializers as s
from devices.authentication import DeviceAgent, DeviceCredentialAuthentication
from devices.filtersets import DeviceFilterSet
from devices.models import Device, EnrollmentToken, NetworkLink


class IsDeviceAgent(permissions.BasePermission):
    message = "A device credential is required (Authorization: Bearer <credential>)."

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.user, DeviceAgent)


def _refusal(error: actions.FleetError) -> exceptions.APIException:
    if isinstance(error, actions.DeviceRetired):
        return exceptions.PermissionDenied(error.message)
    if error.field:
        return exceptions.ValidationError({error.field: [error.message]})
    return exceptions.ValidationError({"non_field_errors": [error.message]})


# --- agent API ----------------------------------------------------------------------------
class EnrollView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=s.EnrollRequestSerializer,
        responses={201: s.EnrollResponseSerializer},
        tags=["agents"],
        summary="Enroll a device with an enrollment token",
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.EnrollRequestSerializer, request.data)
        try:
            device, credential = actions.enroll_device(
                token=data["token"],
                name=data["name"],
                tier=data["tier"],
                hardware=actions.HardwareProfile(**data["hardware"]),
                labels=data["labels"],
                location=data["location"],
            )
        except actions.FleetError as error:
            raise _refusal(error) from error
        body = {
            "device_id": device.id,
            "credential": credential,
            "heartbeat_interval_s": device.heartbeat_interval_s,
            "server_time": timezone.now(),
            "signing": keyring().active().public_info(),
        }
        return Response(s.EnrollResponseSerializer(body).data, status=status.HTTP_201_CREATED)


class AgentView(APIView):
    authentication_classes = [DeviceCredentialAuthentication]
    permission_classes = [IsDeviceAgent]
    # Agents speak JSON only; the browsable API expects a Django user.
    renderer_classes = [JSONRenderer]

    @staticmethod
    def agent(request: Request) -> DeviceAgent:
        assert isinstance(request.user, DeviceAgent)  # guaranteed by IsDeviceAgent
        return request.user


class HeartbeatView(AgentView):
    @extend_schema(
        request=s.HeartbeatRequestSerializer,
        responses={200: s.HeartbeatResponseSerializer},
        tags=["agents"],
        summary="Report telemetry; receive the desired state",
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.HeartbeatRequestSerializer, request.data)
        links = [actions.LinkReport(**link) for link in data["links"]]
        try:
            result = actions.record_heartbeat(
                self.agent(request).device_id, data["telemetry"], links
            )
        except actions.FleetError as error:
            raise _refusal(error) from error
        body = {
            "accepted": result.accepted,
            "server_time": timezone.now(),
            "desired_state": result.desired_state,
        }
        return Response(s.HeartbeatResponseSerializer(body).data)


class RotateCredentialView(AgentView):
    @extend_schema(
        request=None,
        responses={200: s.CredentialSerializer},
        tags=["agents"],
        summary="Replace the device credential; the old one stops working",
    )
    def post(self, request: Request) -> Response:
        device = self.agent(request).device
        credential = actions.rotate_credential(device)
        return Response(
            s.CredentialSerializer({"device_id": device.id, "credential": credential}).data
        )


def _validated(serializer_class: type[Any], data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["Body must be a JSON object."]})
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- operator API -----------------------------------------------------------------------
class DeviceViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Device.objects.all()
    serializer_class = s.DeviceSerializer
    filterset_class = DeviceFilterSet

    @extend_schema(request=s.RetireSerializer, responses={200: s.DeviceSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str | None = None) -> Response:
        data = _validated(s.RetireSerializer, request.data or {})
        device = actions.retire_device(self.get_object(), reason=data["reason"])
        return Response(s.DeviceSerializer(device).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("since", str, description="ISO 8601; default: one hour ago"),
            OpenApiParameter("until", str, description="ISO 8601; default: now"),
            OpenApiParameter("limit", int, description="At most this many samples (1-10000)"),
        ],
        responses={200: s.TelemetrySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def telemetry(self, request: Request, pk: str | None = None) -> Response:
        query = _validated(s.TelemetryQuerySerializer, request.query_params.dict())
        until = query.get("until") or timezone.now()
        since = query.get("since") or until - timedelta(hours=1)
        samples = (
            self.get_object()
            .telemetry.filter(ts__gte=since, ts__lte=until)
            .order_by("-ts")[: query["limit"]]
        )
        return Response(s.TelemetrySerializer(reversed(list(samples)), many=True).data)

    @extend_schema(responses={200: s.StatusChangeSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="status-changes")
    def status_changes(self, request: Request, pk: str | None = None) -> Response:
        changes = self.get_object().status_changes.all()[:200]
        return Response(s.StatusChangeSerializer(changes, many=True).data)


class EnrollmentTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = EnrollmentToken.objects.select_related("created_by")
    serializer_class = s.EnrollmentTokenSerializer

    @extend_schema(responses={201: s.EnrollmentTokenCreatedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token, secret = actions.create_enrollment_token(
            created_by=request.user,
            name=data.get("name", ""),
            max_uses=data["uses"],
            ttl=timedelta(seconds=data["expires_in_s"]),
        )
        token.token = secret  # type: ignore[attr-defined]
        body = s.EnrollmentTokenCreatedSerializer(token).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.EnrollmentTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        token = actions.revoke_enrollment_token(self.get_object())
        return Response(s.EnrollmentTokenSerializer(token).data)


class NetworkLinkViewSet(viewsets.ModelViewSet):
    queryset = NetworkLink.objects.select_related("src_device", "dst_device")
    serializer_class = s.NetworkLinkSerializer

    def get_queryset(self) -> QuerySet[NetworkLink]:
        return super().get_queryset().order_by("id")

    def perform_create(self, serializer: Any) -> None:
        serializer.instance = _save_link(NetworkLink(**serializer.validated_data))

    def perform_update(self, serializer: Any) -> None:
        link = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(link, name, value)
        serializer.instance = _save_link(link)

    def perform_destroy(self, instance: NetworkLink) -> None:
        actions.delete_link(instance)


def _save_link(link: NetworkLink) -> NetworkLink:
    try:
        return actions.save_link(link)
    except DjangoValidationError as error:
        errors = error.message_dict
        errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS, [])
        raise exceptions.ValidationError({k: v for k, v in errors.items() if v}) from error
