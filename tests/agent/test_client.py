"""Each status in the protocol's table maps to its typed result or exception."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from edge_agent.client import (
    AgentClient,
    CredentialRejected,
    EnrollmentRejected,
    RejectedBatch,
    RetryableError,
    TooLarge,
    UnexpectedResponse,
    format_field_errors,
    is_batch_level_error,
    iter_rejected_indexes,
)

SAMPLE = {"ts": "2026-11-27T16:00:00.000Z"}


def client_answering(
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    seen: list[httpx.Request] | None = None,
) -> AgentClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body if body is not None else {}, headers=headers)

    return AgentClient("http://cp.test", "dev_x.secret", transport=httpx.MockTransport(handler))


def test_heartbeat_success_reads_desired_state() -> None:
    seen: list[httpx.Request] = []
    body = {
        "accepted": 1,
        "server_time": "2026-11-27T16:00:00Z",
        "desired_state": {"heartbeat_interval_s": 30},
    }
    result = client_answering(200, body, seen=seen).heartbeat([SAMPLE])
    assert (result.accepted, result.heartbeat_interval_s) == (1, 30.0)
    request = seen[0]
    assert request.url.path == "/api/v1/agents/heartbeat/"
    assert request.headers["Authorization"] == "Bearer dev_x.secret"
    assert json.loads(request.content) == {"telemetry": [SAMPLE]}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, RejectedBatch),
        (401, CredentialRejected),
        (403, CredentialRejected),
        (413, TooLarge),
        (429, RetryableError),
        (500, RetryableError),
        (503, RetryableError),
    ],
)
def test_error_statuses_map_to_exceptions(status: int, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        client_answering(status, {"detail": "x", "code": "y"}).heartbeat([SAMPLE])


def test_connection_errors_and_timeouts_are_retryable() -> None:
    for error in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow")):

        def handler(request: httpx.Request, error: Exception = error) -> httpx.Response:
            raise error

        client = AgentClient("http://cp.test", "c", transport=httpx.MockTransport(handler))
        with pytest.raises(RetryableError):
            client.heartbeat([])


def test_statuses_outside_the_protocol_are_retryable_not_fatal() -> None:
    with pytest.raises(UnexpectedResponse, match="unexpected 404"):
        client_answering(404, {"detail": "Not found."}).heartbeat([SAMPLE])
    assert issubclass(UnexpectedResponse, RetryableError)


def test_a_malformed_enrollment_answer_is_reported() -> None:
    with pytest.raises(UnexpectedResponse, match="malformed"):
        client_answering(201, {"device_id": "x"}).enroll({"token": "t"})


def test_retry_after_is_passed_on() -> None:
    with pytest.raises(RetryableError) as caught:
        client_answering(429, {}, headers={"Retry-After": "7"}).heartbeat([SAMPLE])
    assert caught.value.retry_after_s == 7.0


def test_credential_rejection_carries_detail_and_code() -> None:
    body = {"detail": "Invalid device credential.", "code": "authentication_failed"}
    with pytest.raises(CredentialRejected) as caught:
        client_answering(401, body).heartbeat([SAMPLE])
    assert (caught.value.status, caught.value.code) == (401, "authentication_failed")


def test_enrollment_rejection_keeps_field_errors() -> None:
    errors = {"token": ["Enrollment token has expired."]}
    with pytest.raises(EnrollmentRejected) as caught:
        client_answering(400, errors).enroll({"token": "t"})
    assert caught.value.errors == errors
    assert "token: Enrollment token has expired." in str(caught.value)


def test_nested_field_errors_are_flattened() -> None:
    errors = {
        "telemetry": [{}, {"cpu_percent": ["Ensure this value is less than or equal to 100."]}]
    }
    assert format_field_errors(errors) == [
        "telemetry[1].cpu_percent: Ensure this value is less than or equal to 100."
    ]
    assert list(iter_rejected_indexes(errors, 2)) == [1]
    assert list(iter_rejected_indexes(errors, 3)) == []  # misaligned: cannot tell
    assert is_batch_level_error({"telemetry": ["Ensure this field has no more than 5 elements."]})
    assert not is_batch_level_error(errors)
