"""HTTP client for the agent protocol: maps answers to typed results and exceptions."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from edge_agent import __version__
from edge_agent.download import ProgressCallback, StopCheck, download_artifact
from edge_agent.manifest import ArtifactRef, TrustStore

log = logging.getLogger(__name__)

ENROLL_PATH = "/api/v1/agents/enroll/"
HEARTBEAT_PATH = "/api/v1/agents/heartbeat/"
MODEL_STATUS_PATH = "/api/v1/agents/model-status/"
PROFILE_RESULT_PATH = "/api/v1/agents/profile-result/"
DEFAULT_PROBE_RUNS = 5
MAX_PROBE_RUNS = 100
MAX_PROFILE_RUNS = 1000
USER_AGENT = f"triad-edge-agent/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class AgentError(Exception):
    """Base of every error the client raises."""


class RetryableError(AgentError):
    """The server is away or overloaded (connection error, timeout, 429, 5xx): retry later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Rejected(AgentError):
    """400: the body is invalid and nothing was stored; resending it cannot help."""

    def __init__(self, message: str, errors: Any) -> None:
        super().__init__(message)
        self.errors = errors


class RejectedBatch(Rejected):
    """A heartbeat's telemetry was refused (400)."""


class EnrollmentRejected(Rejected):
    """An enrollment was refused (400), typically an expired or used-up token."""


class ReportRejected(Rejected):
    """A model-status report was refused (400): an unknown deployment, a bad field."""


class CredentialRejected(AgentError):
    """401 (wrong or revoked credential) or 403 (device retired): stop heartbeating."""

    def __init__(self, status: int, detail: str, code: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.detail, self.code = status, detail, code


class TooLarge(AgentError):
    """413: the body exceeded the server's limit; send fewer samples."""


class UnexpectedResponse(RetryableError):
    """A status or body the protocol does not describe (a proxy's 404, an HTML error page).

    Retryable rather than fatal: it usually means a misconfigured or half-deployed
    server, and dropping queued samples over it would lose data for nothing.
    """


@dataclass(frozen=True)
class EnrollResult:
    device_id: str
    credential: str
    heartbeat_interval_s: float
    server_time: str | None
    signing: dict[str, str] | None = None  # the key to pin; None: the server signs nothing


@dataclass(frozen=True)
class ModelOrder:
    """``desired_state.model``: the model the device should run (docs/rollouts.md).

    Nothing in it is trusted until the manifest's signature is verified; the parser only
    gives it a shape, and leaves every judgement to the reconciler.
    """

    deployment_id: str
    manifest: Any  # the signed document, as received
    artifact_url: str | None
    latency_budget_ms: float | None
    probe_runs: int
    key_rotations: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ProfileOrder:
    """``desired_state.profile``: time a model on this device without installing it."""

    run_id: str
    manifest: Any  # the signed document, as received
    artifact_url: str | None
    runs: int
    key_rotations: tuple[Any, ...] = ()


@dataclass(frozen=True)
class HeartbeatResult:
    accepted: int
    server_time: str | None
    heartbeat_interval_s: float | None  # from desired_state; None when the server sent none
    model: ModelOrder | None = None  # desired_state.model; None: no order, keep what runs
    profile: ProfileOrder | None = None  # desired_state.profile; None: nothing to time


def format_field_errors(errors: Any, prefix: str = "") -> list[str]:
    """Flatten DRF-style nested errors into ``field.path: message`` lines."""
    if isinstance(errors, Mapping):
        return [
            line
            for key, value in errors.items()
            for line in format_field_errors(value, f"{prefix}.{key}" if prefix else str(key))
        ]
    if isinstance(errors, list) and all(isinstance(item, str) for item in errors):
        return [f"{prefix or 'error'}: {message}" for message in errors]
    if isinstance(errors, list):
        return [
            line
            for index, item in enumerate(errors)
            for line in format_field_errors(item, f"{prefix}[{index}]")
        ]
    return [f"{prefix or 'error'}: {errors}"]


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value: str | None = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # the HTTP-date form
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(parsed.timestamp() - time.time(), 0.0)


def raise_for_error(response: httpx.Response, rejected: type[Rejected]) -> None:
    """Raise the exception the protocol's status table prescribes; return on 2xx."""
    status = response.status_code
    if status < 300:
        return
    body = _json_or_text(response)
    if status == 400:
        lines = "; ".join(format_field_errors(body)) or "no details"
        raise rejected(f"400 rejected: {lines}", body)
    if status in (401, 403):
        detail = body.get("detail", "") if isinstance(body, dict) else str(body)
        code = body.get("code", "") if isinstance(body, dict) else ""
        raise CredentialRejected(status, str(detail), str(code or status))
    if status == 413:
        raise TooLarge("413: body larger than the server accepts")
    if status == 429 or status >= 500:
        raise RetryableError(f"{status} from server", _retry_after(response))
    raise UnexpectedResponse(f"unexpected {status} from server: {str(body)[:200]}")


def _positive_interval(value: Any) -> float | None:
    try:
        interval = float(value)
    except (TypeError, ValueError):
        return None
    return interval if interval > 0 else None


def _count(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_enroll(response: httpx.Response) -> EnrollResult:
    raise_for_error(response, EnrollmentRejected)
    body = _json_or_text(response)
    try:
        return EnrollResult(
            device_id=str(body["device_id"]),
            credential=str(body["credential"]),
            heartbeat_interval_s=_positive_interval(body.get("heartbeat_interval_s")) or 10.0,
            server_time=body.get("server_time"),
            signing=parse_signing(body.get("signing")),
        )
    except (KeyError, TypeError) as exc:
        raise UnexpectedResponse(f"malformed enrollment answer: {str(body)[:200]}") from exc


def parse_signing(value: Any) -> dict[str, str] | None:
    """The enrollment answer's ``signing`` key, checked; None when absent or unusable.

    An unusable key does not fail the enrollment: the token is spent and the credential
    is good, so the agent keeps both and refuses model orders (``unsigned``) until it is
    enrolled again, which the log says.
    """
    if value is None:
        log.warning("the server sent no signing key: model orders will be refused")
        return None
    try:
        return TrustStore.from_signing_json(value).to_signing_json()
    except ValueError as exc:
        log.error("the server's signing key is unusable (%s): model orders will be refused", exc)
        return None


def parse_heartbeat(response: httpx.Response) -> HeartbeatResult:
    raise_for_error(response, RejectedBatch)
    body = _json_or_text(response)
    body = body if isinstance(body, dict) else {}
    desired = body.get("desired_state")
    desired = desired if isinstance(desired, dict) else {}
    return HeartbeatResult(
        accepted=_count(body.get("accepted")),
        server_time=body.get("server_time"),
        heartbeat_interval_s=_positive_interval(desired.get("heartbeat_interval_s")),
        model=parse_model_order(desired.get("model")),
        profile=parse_profile_order(desired.get("profile")),
    )


def parse_model_order(value: Any) -> ModelOrder | None:
    """Shape ``desired_state.model``; None when absent, null, or without a deployment id.

    An order without a deployment id cannot even be reported on, so it is logged and
    treated as no order. The rest (health check, rotations) falls back to defaults: the
    manifest's signature decides whether the order is followed at all.
    """
    if value is None:
        return None
    deployment_id = value.get("deployment_id") if isinstance(value, dict) else None
    if not isinstance(deployment_id, str) or not deployment_id:
        log.warning("ignoring a model order without a deployment_id: %s", str(value)[:200])
        return None
    health = value.get("health_check")
    health = health if isinstance(health, dict) else {}
    url = value.get("artifact_url")
    rotations = value.get("key_rotations")
    return ModelOrder(
        deployment_id=deployment_id,
        manifest=value.get("manifest"),
        artifact_url=url if isinstance(url, str) and url else None,
        latency_budget_ms=_latency_budget(health.get("latency_budget_ms")),
        probe_runs=_probe_runs(health.get("probe_runs")),
        key_rotations=tuple(rotations) if isinstance(rotations, list) else (),
    )


def parse_profile_order(value: Any) -> ProfileOrder | None:
    """Shape ``desired_state.profile``; None when absent, null, or without a run id."""
    if value is None:
        return None
    run_id = value.get("run_id") if isinstance(value, dict) else None
    if not isinstance(run_id, str) or not run_id:
        log.warning("ignoring a profiling order without a run_id: %s", str(value)[:200])
        return None
    url = value.get("artifact_url")
    runs = value.get("runs")
    rotations = value.get("key_rotations")
    return ProfileOrder(
        run_id=run_id,
        manifest=value.get("manifest"),
        artifact_url=url if isinstance(url, str) and url else None,
        runs=_bounded_runs(runs, MAX_PROFILE_RUNS, default=50),
        key_rotations=tuple(rotations) if isinstance(rotations, list) else (),
    )


def _latency_budget(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        budget = float(value)
    except (TypeError, ValueError):
        log.warning("ignoring a latency budget that is not a number: %r", value)
        return None
    return budget if math.isfinite(budget) and budget >= 0 else None


def _probe_runs(value: Any) -> int:
    return _bounded_runs(value, MAX_PROBE_RUNS, DEFAULT_PROBE_RUNS)


def _bounded_runs(value: Any, most: int, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 1), most)
    return default


def enroll_body(
    token: str,
    name: str,
    tier: str,
    hardware: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"token": token, "name": name, "tier": tier, "hardware": dict(hardware)}
    if labels:
        body["labels"] = dict(labels)
    if location:
        body["location"] = location
    return body


def heartbeat_body(
    telemetry: list[dict[str, Any]], links: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"telemetry": telemetry}
    if links:
        body["links"] = links
    return body


MODEL_STATES = ("downloading", "verifying", "active", "failed")
MAX_DETAIL_CHARS = 1000


def model_status_body(
    deployment_id: str,
    version: int,
    state: str,
    progress: float = 0.0,
    reason: str = "",
    detail: str = "",
    active: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The model-status report (docs/rollouts.md); ``active`` is the (sha256, version) served."""
    if state not in MODEL_STATES:
        raise ValueError(f"unknown model state {state!r}")
    return {
        "deployment_id": deployment_id,
        "version": version,
        "state": state,
        "progress": round(min(max(progress, 0.0), 1.0), 4),
        "reason": str(reason),
        "detail": detail[:MAX_DETAIL_CHARS],
        "active": {"sha256": active[0], "version": active[1]} if active else None,
    }


def profile_result_body(
    run_id: str,
    state: str,
    p50_ms: float | None = None,
    p95_ms: float | None = None,
    runs: int = 0,
    reason: str = "",
    detail: str = "",
) -> dict[str, Any]:
    """The profiling result (docs/rollouts.md, "Profiling"): ``measured`` or ``failed``."""
    if state not in ("measured", "failed"):
        raise ValueError(f"unknown profiling state {state!r}")
    body: dict[str, Any] = {"run_id": run_id, "state": state}
    if state == "measured":
        body.update(p50_ms=p50_ms, p95_ms=p95_ms, runs=runs)
    else:
        body.update(reason=str(reason), detail=detail[:MAX_DETAIL_CHARS])
    return body


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@contextmanager
def transport_errors_are_retryable() -> Iterator[None]:
    """Turn httpx transport failures (refused, reset, timeouts) into RetryableError."""
    try:
        yield
    except httpx.TransportError as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc


class AgentClient:
    """Synchronous client used by ``enroll`` and ``run``."""

    def __init__(
        self,
        server: str,
        credential: str | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credential = credential
        self._http = httpx.Client(
            base_url=server,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def enroll(self, body: dict[str, Any]) -> EnrollResult:
        with transport_errors_are_retryable():
            response = self._http.post(ENROLL_PATH, json=body)
        result = parse_enroll(response)
        self.credential = result.credential
        return result

    def heartbeat(
        self, telemetry: list[dict[str, Any]], links: list[dict[str, Any]] | None = None
    ) -> HeartbeatResult:
        with transport_errors_are_retryable():
            response = self._http.post(
                HEARTBEAT_PATH, json=heartbeat_body(telemetry, links), headers=self._auth()
            )
        return parse_heartbeat(response)

    def report_model_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a model-status report; the server's answer (the device's rollout state)."""
        return self._post_report(MODEL_STATUS_PATH, body)

    def report_profile_result(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a profiling result; the server's answer."""
        return self._post_report(PROFILE_RESULT_PATH, body)

    def _post_report(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with transport_errors_are_retryable():
            response = self._http.post(path, json=body, headers=self._auth())
        raise_for_error(response, ReportRejected)
        answer = _json_or_text(response)
        return answer if isinstance(answer, dict) else {}

    def download_artifact(
        self,
        url: str,
        part: Path,
        artifact: ArtifactRef,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> None:
        """Complete and verify ``part`` from ``url`` (see ``edge_agent.download``)."""
        headers = self._auth() if same_origin(str(self._http.base_url), url) else {}
        download_artifact(self._http, url, headers, part, artifact, on_progress, should_stop)

    def _auth(self) -> dict[str, str]:
        if not self.credential:
            raise CredentialRejected(401, "no credential; enroll first", "not_enrolled")
        return bearer(self.credential)


class AsyncAgentClient:
    """Async client over a shared ``httpx.AsyncClient`` (one connection pool per simulator).

    ``gate``, shared by the clients of one pool, bounds how many of their requests wait
    in the pool at once. httpx's pool scans every queued request against every connection
    each time one frees, so a thousand queued at once (a fleet nudged together, or
    enrolling together) cost it seconds of CPU per second and end in pool timeouts; an
    asyncio.Semaphore queues the rest at no such cost.
    """

    def __init__(self, http: httpx.AsyncClient, gate: asyncio.Semaphore | None = None) -> None:
        self._http = http
        self._gate = gate

    async def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        async with self._gate or contextlib.nullcontext():
            with transport_errors_are_retryable():
                return await self._http.post(path, json=body, headers=headers)

    async def enroll(self, body: dict[str, Any]) -> EnrollResult:
        return parse_enroll(await self._post(ENROLL_PATH, body))

    async def heartbeat(
        self,
        credential: str,
        telemetry: list[dict[str, Any]],
        links: list[dict[str, Any]] | None = None,
    ) -> HeartbeatResult:
        body = heartbeat_body(telemetry, links)
        return parse_heartbeat(await self._post(HEARTBEAT_PATH, body, bearer(credential)))

    async def report_model_status(self, credential: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post_report(MODEL_STATUS_PATH, credential, body)

    async def report_profile_result(self, credential: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._post_report(PROFILE_RESULT_PATH, credential, body)

    async def _post_report(
        self, path: str, credential: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        response = await self._post(path, body, bearer(credential))
        raise_for_error(response, ReportRejected)
        answer = _json_or_text(response)
        return answer if isinstance(answer, dict) else {}


def same_origin(server: str, url: str) -> bool:
    """Whether ``url`` (relative, or absolute) points at the server itself.

    The device's credential goes only there: an artifact URL on another host (a storage
    bucket, say) must not learn it.
    """
    target = urlsplit(url)
    if not target.scheme and not target.netloc:
        return True
    base = urlsplit(server)
    return (target.scheme, target.netloc) == (base.scheme, base.netloc)


def iter_rejected_indexes(errors: Any, batch_size: int) -> Iterator[int]:
    """Indexes of samples the server flagged in a per-sample 400 answer.

    DRF reports list-item errors as a list aligned with the batch (``{}`` for good
    items). Yields nothing when the answer has no such alignment, in which case the
    caller cannot tell good from bad and must treat the whole batch as rejected.
    """
    items = errors.get("telemetry") if isinstance(errors, dict) else None
    if not isinstance(items, list) or len(items) != batch_size:
        return
    if not all(isinstance(item, dict) for item in items):
        return
    yield from (index for index, item in enumerate(items) if item)


def is_batch_level_error(errors: Any) -> bool:
    """True when the 400 is about the telemetry list as a whole (e.g. too many items).

    The server's batch limit is configurable (TRIAD_MAX_TELEMETRY_BATCH) and not
    advertised, so a smaller batch may well be accepted where this one was not.
    """
    items = errors.get("telemetry") if isinstance(errors, dict) else None
    return isinstance(items, list) and bool(items) and all(isinstance(i, str) for i in items)
