"""Reject oversized API bodies before anything reads them."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

# Routes that take workload files (WfCommons traces run to megabytes): their limit is
# TRIAD_MAX_UPLOAD_BYTES instead.
UPLOAD_ROUTES = ("workload-upload", "scheduling-workloads")
# Routes that take model files and data sets (hundreds of megabytes): TRIAD_MAX_MODEL_BYTES.
# The API's, and the console pages' upload forms.
MODEL_UPLOAD_ROUTES = ("modelartifact-list", "dataset-list", "models", "models-datasets")


@cache
def upload_paths() -> frozenset[str]:
    return frozenset(reverse(name) for name in UPLOAD_ROUTES)


@cache
def model_upload_paths() -> frozenset[str]:
    return frozenset(reverse(name) for name in MODEL_UPLOAD_ROUTES)


def body_limit(path: str) -> int:
    """The largest body a request to `path` may send."""
    if path in model_upload_paths():
        return int(settings.TRIAD_MAX_MODEL_BYTES)
    if path in upload_paths():
        return int(settings.TRIAD_MAX_UPLOAD_BYTES)
    return int(settings.TRIAD_MAX_BODY_BYTES)


class BodySizeLimitMiddleware:
    """Answer 413 with a JSON error when Content-Length exceeds TRIAD_MAX_BODY_BYTES
    (TRIAD_MAX_UPLOAD_BYTES on the upload routes, TRIAD_MAX_MODEL_BYTES on the model ones).

    Django's DATA_UPLOAD_MAX_MEMORY_SIZE also caps bodies read through request.body, which
    covers requests without a Content-Length (chunked uploads).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return JsonResponse(
                {"detail": "Content-Length is not an integer.", "code": "bad_request"}, status=400
            )
        limit = body_limit(request.path)
        if length > limit:
            return JsonResponse(
                {
                    "detail": f"Request body is {length} bytes; the limit is {limit}.",
                    "code": "request_too_large",
                },
                status=413,
            )
        return self.get_response(request)
