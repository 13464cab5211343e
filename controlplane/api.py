"""API-wide helpers: error handling (every error is JSON, with a machine-readable code)
and the small steps every app's views share."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and set(data) == {"detail"}:
        code = getattr(data["detail"], "code", None) or "error"
        response.data = {"detail": str(data["detail"]), "code": code}
    return response


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """The request's data as `serializer_class` validates it; a 400 naming the fields if not."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def created(body: Any) -> Response:
    return Response(body, status=status.HTTP_201_CREATED)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this."
    default_code = "conflict"
