"""Simulated agents obey model orders too (docs/rollouts.md), so rollouts can be load-tested.

A hundred agents on one machine cannot each keep a copy of a 50 MB model and run
onnxruntime on it. So each simulated agent downloads *every byte* of the artifact with
its own request (the server's serving load is real) and verifies the size, the SHA-256,
the signature chain and the version rules itself, exactly as a real agent does; but the
process keeps **one file per sha256** (written by one agent at a time while no copy
exists; the others only count and hash) and runs the onnxruntime health check **once per
sha256**. Every state is reported like a real agent's. A profiling order is timed **once
per sha256 and run count**, with as many runs as the order asks, and that measurement is
what every agent with the order reports: the ``runs`` it reports were timed, once, on
the simulator's machine. ``--faulty`` agents fail every health check, for
benchmarks and tests of a rollout that has to stop.

What a simulated agent holds (active, previous, versions, failures) is kept in
``sim-<index>-models.json``, so a restarted simulation confirms the orders its agents
already follow instead of downloading them all again, as restarted real agents do.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from edge_agent.backoff import Backoff
from edge_agent.client import (
    ModelOrder,
    ProfileOrder,
    bearer,
    model_status_body,
    profile_result_body,
    same_origin,
)
from edge_agent.deploy import (
    PERSISTED_FAILURES,
    Action,
    Holdings,
    health_detail,
    health_spec,
    plan_order,
    utc_now,
)
from edge_agent.download import ArtifactReceiver, continues_part
from edge_agent.health import HealthCheckSpec, HealthReport, health_check
from edge_agent.manifest import (
    ArtifactRef,
    IoSignature,
    Manifest,
    ManifestRefused,
    Reason,
    TrustStore,
    check_freshness,
    peek_version,
    verify_manifest,
)
from edge_agent.modelstore import FailedVersion
from edge_agent.state import StateError, read_json, write_private_json

log = logging.getLogger(__name__)

INJECTED_FAULT = "injected fault (--faulty)"
PROGRESS_EVERY_S = 1.0


class SharedArtifacts:
    """The files and health checks the simulated agents of one process share, by sha256."""

    def __init__(self, directory: Path, max_downloads: int) -> None:
        self.directory = directory
        self.partial = directory / "partial"
        self.partial.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.downloads = asyncio.Semaphore(max_downloads)
        self._checks: dict[str, asyncio.Task[HealthReport | ManifestRefused]] = {}
        self._profiles: dict[tuple[str, int], asyncio.Task[HealthReport | ManifestRefused]] = {}
        self._writers: set[str] = set()
        self._changes = asyncio.Event()  # set, and replaced, whenever a copy or writer changes

    def model_path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.onnx"

    def has(self, sha256: str) -> bool:
        return self.model_path(sha256).is_file()

    def part_path(self, sha256: str, agent_index: int) -> Path:
        return self.partial / f"{sha256}.{agent_index}.part"

    def claim_writer(self, sha256: str) -> bool:
        """Whether the caller should write ``sha256``'s copy: none exists and nobody writes one."""
        if self.has(sha256) or sha256 in self._writers:
            return False
        self._writers.add(sha256)
        return True

    def release_writer(self, sha256: str, part: Path, verified: bool) -> None:
        """The writer is done: its verified part becomes the copy, any other part goes."""
        if verified and not self.has(sha256):
            os.replace(part, self.model_path(sha256))
        part.unlink(missing_ok=True)
        self._writers.discard(sha256)
        self._changes.set()
        self._changes = asyncio.Event()

    async def wait_for_copy(self, sha256: str) -> bool:
        """True once a copy exists; False if none does and nobody is writing one."""
        while not self.has(sha256):
            if sha256 not in self._writers:
                return False
            await self._changes.wait()
        return True

    async def health(self, sha256: str, io: IoSignature) -> HealthReport:
        """The onnxruntime check of ``sha256``, run once for all agents; raises its refusal."""
        if sha256 not in self._checks:
            # No budget here: each agent compares the p50 with its own order's budget.
            spec = HealthCheckSpec(latency_budget_ms=None, probe_runs=5)
            self._checks[sha256] = asyncio.create_task(self._check(sha256, io, spec))
        return await self._outcome(self._checks[sha256])

    async def profile(self, sha256: str, io: IoSignature, runs: int) -> HealthReport:
        """``runs`` timed inferences of ``sha256``, measured once for all agents that ask."""
        key = (sha256, runs)
        if key not in self._profiles:
            spec = HealthCheckSpec(latency_budget_ms=None, probe_runs=runs)
            self._profiles[key] = asyncio.create_task(self._check(sha256, io, spec))
        return await self._outcome(self._profiles[key])

    @staticmethod
    async def _outcome(task: asyncio.Task[HealthReport | ManifestRefused]) -> HealthReport:
        outcome = await asyncio.shield(task)  # one agent's cancellation must not stop it
        if isinstance(outcome, ManifestRefused):
            raise outcome
        return outcome

    async def _check(
        self, sha256: str, io: IoSignature, spec: HealthCheckSpec
    ) -> HealthReport | ManifestRefused:
        try:
            return await asyncio.to_thread(health_check, self.model_path(sha256), io, spec)
        except ManifestRefused as refusal:
            return refusal


@dataclass
class SimulatedHoldings:
    active: tuple[str, int] | None = None
    previous: tuple[str, int] | None = None
    current_version: int | None = None
    highest_version: int | None = None
    failed: dict[int, FailedVersion] = field(default_factory=dict)

    def holdings(self) -> Holdings:
        return Holdings(
            self.active,
            self.previous[0] if self.previous else None,
            self.current_version,
            self.highest_version,
            dict(self.failed),
        )

    def accept(self, version: int) -> None:
        self.current_version = version
        self.highest_version = max(version, self.highest_version or 0)

    def switch_to(self, active: tuple[str, int] | None) -> None:
        if self.active is not None and (active is None or self.active[0] != active[0]):
            self.previous = self.active
        self.active = active

    def to_json(self) -> dict[str, Any]:
        return {
            "active": list(self.active) if self.active else None,
            "previous": list(self.previous) if self.previous else None,
            "current_version": self.current_version,
            "highest_version": self.highest_version,
            "failed": {
                str(v): [f.reason, f.detail, f.deployment_id] for v, f in self.failed.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimulatedHoldings:
        def pair(value: Any) -> tuple[str, int] | None:
            return (str(value[0]), int(value[1])) if value else None

        return cls(
            active=pair(data.get("active")),
            previous=pair(data.get("previous")),
            current_version=data.get("current_version"),
            highest_version=data.get("highest_version"),
            failed={int(v): FailedVersion(*item) for v, item in (data.get("failed") or {}).items()},
        )

    @classmethod
    def load(cls, path: Path) -> SimulatedHoldings:
        try:
            return cls.from_json(read_json(path))
        except (StateError, ValueError, TypeError, IndexError, KeyError):
            return cls()  # a new device, or an unreadable file: it holds nothing


Report = Callable[[dict[str, Any]], Awaitable[None]]
Progress = Callable[[float, str, str], Awaitable[None]]  # fraction, reason, detail


class SimulatedModels:
    """One simulated agent's side of rollouts: follows its latest order on a task of its own."""

    def __init__(
        self,
        index: int,
        shared: SharedArtifacts,
        http: httpx.AsyncClient,
        credential: Callable[[], str],
        trust: TrustStore,
        report: Report,
        report_profile: Report,
        faulty: bool = False,
        on_trust_change: Callable[[TrustStore], Awaitable[None]] | None = None,
        holdings_path: Path | None = None,
    ) -> None:
        self.index = index
        self.trust = trust
        self._holdings_path = holdings_path
        self.held = SimulatedHoldings.load(holdings_path) if holdings_path else SimulatedHoldings()
        self.downloaded_bytes = 0
        self._shared = shared
        self._http = http
        self._credential = credential
        self._report_body = report
        self._report_profile = report_profile
        self._faulty = faulty
        self._on_trust_change = on_trust_change
        self._backoff = Backoff(random.Random(f"triad-sim-models:{index}"), 1.0, 60.0)
        self._order: ModelOrder | None = None
        self._task: asyncio.Task[None] | None = None
        self._profile_order: ProfileOrder | None = None
        self._profile_task: asyncio.Task[None] | None = None

    async def forget(self) -> None:
        """This agent enrolled as a new device: it holds no model."""
        self.held = SimulatedHoldings()
        await self._save()

    async def _save(self) -> None:
        if self._holdings_path is not None:
            await asyncio.to_thread(write_private_json, self._holdings_path, self.held.to_json())

    def offer(self, order: ModelOrder | None) -> None:
        """Follow ``order`` from now on; a newer order cancels the one in progress."""
        if order is None or order == self._order:
            return
        if self._task is not None:
            self._task.cancel()
        self._order = order
        self._task = asyncio.create_task(self.follow(order))

    async def close(self) -> None:
        tasks = [task for task in (self._task, self._profile_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _apply_rotations(self, chain: tuple[Any, ...]) -> None:
        if self.trust.apply_rotations(chain) and self._on_trust_change is not None:
            await self._on_trust_change(self.trust)

    async def follow(self, order: ModelOrder) -> None:
        try:
            await self._apply_rotations(order.key_rotations)
            plan = plan_order(order, self.trust, self.held.holdings(), utc_now())
            await self._carry_out(order, plan.action, plan.manifest, plan.failure)
        except ManifestRefused as refusal:
            await self._refused(order, refusal)

    async def _carry_out(
        self,
        order: ModelOrder,
        action: Action,
        manifest: Manifest,
        failure: FailedVersion | None,
    ) -> None:
        version = manifest.version
        if action is Action.REPORT_FAILED and failure is not None:
            await self._report(order, version, "failed", 0.0, failure.reason, failure.detail)
            return
        if action is Action.DEACTIVATE:
            self.held.switch_to(None)
        elif action is Action.REFRESH:
            assert self.held.active is not None
            self.held.active = (self.held.active[0], version)
        elif action in (Action.SWITCH_BACK, Action.INSTALL):
            await self._install(order, manifest, download=action is Action.INSTALL)
            return
        if action is not Action.CONFIRM:
            self.held.accept(version)
            await self._save()
        await self._report(order, version, "active", 1.0)

    async def _install(self, order: ModelOrder, manifest: Manifest, download: bool) -> None:
        artifact = manifest.artifact
        assert artifact is not None and manifest.io is not None
        progress = functools.partial(self._report, order, manifest.version, "downloading")
        await self._fetch_copy(order.artifact_url, artifact, progress, download)
        await self._report(order, manifest.version, "verifying", 1.0)
        report = await self._health(order, manifest)
        self.held.switch_to((artifact.sha256, manifest.version))
        self.held.accept(manifest.version)
        await self._save()
        await self._report(order, manifest.version, "active", 1.0, "", health_detail(report))

    async def _fetch_copy(
        self,
        url: str | None,
        artifact: ArtifactRef,
        progress: Progress | None,
        download: bool = True,
    ) -> None:
        """Download (if asked), then make sure the process holds a copy to check."""
        while download or not await self._shared.wait_for_copy(artifact.sha256):
            if url is None:
                raise ManifestRefused(Reason.MALFORMED, "the order has no artifact_url")
            await self._download(url, artifact, progress)
            download = False

    async def _health(self, order: ModelOrder, manifest: Manifest) -> HealthReport:
        assert manifest.artifact is not None and manifest.io is not None
        if self._faulty:
            raise ManifestRefused(Reason.HEALTH_CHECK_FAILED, INJECTED_FAULT)
        report = await self._shared.health(manifest.artifact.sha256, manifest.io)
        budget = health_spec(order).latency_budget_ms
        if budget is not None and report.p50_ms > budget:
            raise ManifestRefused(
                Reason.HEALTH_CHECK_FAILED,
                f"the probe's p50 latency {report.p50_ms:.2f} ms exceeds the budget of {budget} ms",
            )
        return report

    async def _download(self, url: str, artifact: ArtifactRef, progress: Progress | None) -> None:
        """Every byte, with this agent's own requests; resumed from its count after a failure."""
        receiver = ArtifactReceiver(artifact)
        writes = self._shared.claim_writer(artifact.sha256)
        part = self._shared.part_path(artifact.sha256, self.index)
        verified = False
        if progress is not None:
            await progress(0.0, "", "")
        try:
            while not verified:
                try:
                    async with self._shared.downloads:
                        await self._fetch(url, receiver, part if writes else None, progress)
                    receiver.finish()
                    verified = True
                except ManifestRefused as refusal:
                    if not refusal.retryable:
                        raise
                    await self._retry_later(receiver, refusal, progress)
            self._backoff.reset()
        finally:
            if writes:
                self._shared.release_writer(artifact.sha256, part, verified)

    async def _retry_later(
        self, receiver: ArtifactReceiver, refusal: ManifestRefused, progress: Progress | None
    ) -> None:
        delay = self._backoff.next_delay()
        if progress is not None:
            detail = f"{refusal.detail}; retry in {delay:.0f} s"
            await progress(receiver.fraction, Reason.DOWNLOAD_FAILED.value, detail)
        await asyncio.sleep(delay)

    async def _fetch(
        self, url: str, receiver: ArtifactReceiver, part: Path | None, progress: Progress | None
    ) -> None:
        offset = receiver.received
        own_server = same_origin(str(self._http.base_url), url)
        headers = bearer(self._credential()) if own_server else {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        loop = asyncio.get_running_loop()
        last_report = loop.time()
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if not continues_part(response, offset, receiver):
                    receiver.restart()
                    raise ManifestRefused(Reason.DOWNLOAD_FAILED, "the server refused the range")
                with _open_part(part, receiver.received) as out:
                    async for chunk in response.aiter_bytes():
                        receiver.feed(chunk)
                        self.downloaded_bytes += len(chunk)
                        if out is not None:
                            out.write(chunk)
                        if progress is not None and loop.time() - last_report >= PROGRESS_EVERY_S:
                            last_report = loop.time()
                            await progress(receiver.fraction, "", "")
        except httpx.TransportError as exc:
            raise ManifestRefused(
                Reason.DOWNLOAD_FAILED, f"{type(exc).__name__} after {receiver.received} bytes"
            ) from exc

    # --- profiling (docs/rollouts.md, "Profiling")

    def offer_profile(self, order: ProfileOrder | None) -> None:
        """Time ``order``'s model: every byte downloaded by this agent; the order's ``runs``
        timed once per sha256 and run count, that measurement shared by the process."""
        if order is None or order == self._profile_order:
            return
        if self._profile_task is not None:
            self._profile_task.cancel()
        self._profile_order = order
        self._profile_task = asyncio.create_task(self.profile(order))

    async def profile(self, order: ProfileOrder) -> None:
        try:
            body = await self._measure(order)
        except ManifestRefused as refusal:
            body = profile_result_body(
                order.run_id, "failed", reason=refusal.reason.value, detail=refusal.detail
            )
        await self._report_profile(body)

    async def _measure(self, order: ProfileOrder) -> dict[str, Any]:
        await self._apply_rotations(order.key_rotations)
        manifest = verify_manifest(order.manifest, self.trust)
        check_freshness(manifest, utc_now(), None)  # no version rule for a measurement
        artifact, io = manifest.artifact, manifest.io
        if artifact is None or io is None:
            raise ManifestRefused(Reason.MALFORMED, "a profiling order must name an artifact")
        await self._fetch_copy(order.artifact_url, artifact, progress=None)
        # The process times each (sha256, runs) once: the p50 and p95 of the runs asked for.
        report = await self._shared.profile(artifact.sha256, io, order.runs)
        return profile_result_body(
            order.run_id, "measured", report.p50_ms, report.p95_ms, report.runs
        )

    async def _refused(self, order: ModelOrder, refusal: ManifestRefused) -> None:
        version = peek_version(order.manifest)
        if refusal.reason in PERSISTED_FAILURES and version is not None:
            failure = FailedVersion(refusal.reason.value, refusal.detail, order.deployment_id)
            self.held.failed[version] = failure
            await self._save()
        log.debug("simulated agent %d refused an order: %s", self.index, refusal)
        await self._report(order, version or 1, "failed", 0.0, refusal.reason.value, refusal.detail)

    async def _report(
        self,
        order: ModelOrder,
        version: int,
        state: str,
        progress: float,
        reason: str = "",
        detail: str = "",
    ) -> None:
        body = model_status_body(
            order.deployment_id, version, state, progress, reason, detail, self.held.active
        )
        await self._report_body(body)


@contextmanager
def _open_part(part: Path | None, offset: int) -> Iterator[BinaryIO | None]:
    """The part file to append to at ``offset``, or None when this agent only hashes."""
    if part is None:
        yield None
        return
    with part.open("r+b" if offset and part.exists() else "wb") as handle:
        handle.truncate(offset)
        handle.seek(offset)
        yield handle
