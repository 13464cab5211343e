"""The reconciler: brings the model the device runs in line with the server's order.

Orders arrive with heartbeats; the reconciler follows the latest one on its own thread, so
a 50 MB download never holds a heartbeat up, and a newer order stops an older download
(its part file stays, to resume if that artifact is ordered again). Every step follows
docs/rollouts.md: rotations, then the manifest's checks, then download, verification,
staging, the switch and the health check; every change of state is reported.

In every failure the device keeps serving the model it had: nothing touches the
``active`` link before the new model is staged and verified, and a failed health check
puts both links back as they were.
"""

from __future__ import annotations

import enum
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edge_agent.backoff import Backoff
from edge_agent.client import ModelOrder, ProfileOrder, model_status_body, profile_result_body
from edge_agent.download import DownloadStopped, ProgressCallback, StopCheck
from edge_agent.health import HealthCheckSpec, HealthReport, health_check
from edge_agent.manifest import (
    ArtifactRef,
    Manifest,
    ManifestRefused,
    Reason,
    TrustStore,
    check_freshness,
    peek_version,
    verify_manifest,
)
from edge_agent.modelstore import FailedVersion, InstalledVersion, ModelStore

log = logging.getLogger(__name__)

# Failures the artifact itself caused: the same version would fail again, so they are
# remembered across restarts. A full disk or an outage may pass; those are not.
PERSISTED_FAILURES = frozenset(
    {Reason.SIZE_MISMATCH, Reason.HASH_MISMATCH, Reason.HEALTH_CHECK_FAILED}
)
REENROLL_HINT = (
    "this agent has no pinned signing key (it enrolled before signed rollouts); "
    "enroll it again with `python -m edge_agent enroll` to accept model orders"
)


class Action(enum.Enum):
    CONFIRM = "confirm"  # the device follows this version already: say so
    REPORT_FAILED = "report_failed"  # this version failed before: say so again
    REFRESH = "refresh"  # the active artifact under a higher version: record it
    DEACTIVATE = "deactivate"  # run no model
    SWITCH_BACK = "switch_back"  # the previous version, still on disk: no download
    INSTALL = "install"


@dataclass(frozen=True)
class Holdings:
    """What a device holds now, as ``plan_order`` needs it (real or simulated agents)."""

    active: tuple[str, int] | None  # (sha256, version) of the model it serves
    previous_sha256: str | None
    current_version: int | None
    highest_version: int | None
    failed: Mapping[int, FailedVersion]


@dataclass(frozen=True)
class Plan:
    action: Action
    manifest: Manifest
    failure: FailedVersion | None = None


def plan_order(order: ModelOrder, trust: TrustStore, holdings: Holdings, now: datetime) -> Plan:
    """Check an order as far as it can be without its bytes, and say what following it takes.

    Raises ``ManifestRefused`` (unsigned, bad_signature, malformed, expired, rollback). The
    version the device follows now is confirmed before expiry is checked: an old order
    that is still in force must not turn into a failure when its manifest expires.
    """
    manifest = verify_manifest(order.manifest, trust)
    sha256 = manifest.artifact.sha256 if manifest.artifact else None
    active_sha256 = holdings.active[0] if holdings.active else None
    if manifest.version == holdings.current_version and sha256 == active_sha256:
        return Plan(Action.CONFIRM, manifest)
    failure = holdings.failed.get(manifest.version)
    if failure is not None:
        return Plan(Action.REPORT_FAILED, manifest, failure)
    check_freshness(manifest, now, holdings.highest_version)
    if sha256 is None:
        return Plan(Action.DEACTIVATE, manifest)
    if sha256 == active_sha256:
        return Plan(Action.REFRESH, manifest)
    if sha256 == holdings.previous_sha256:
        return Plan(Action.SWITCH_BACK, manifest)
    if order.artifact_url is None:
        raise ManifestRefused(Reason.MALFORMED, "the order names an artifact but no artifact_url")
    return Plan(Action.INSTALL, manifest)


def health_spec(order: ModelOrder) -> HealthCheckSpec:
    return HealthCheckSpec(order.latency_budget_ms, order.probe_runs)


def health_detail(report: HealthReport) -> str:
    return f"health check passed: p50 {report.p50_ms:.2f} ms, p95 {report.p95_ms:.2f} ms"


class ArtifactSource(Protocol):
    def download_artifact(
        self,
        url: str,
        part: Path,
        artifact: ArtifactRef,
        on_progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> None: ...


class StatusSink(Protocol):
    def report(self, body: dict[str, Any]) -> None: ...


class Superseded(Exception):
    """A newer order arrived (or the agent is stopping) while this one was being followed."""


@dataclass
class DeployConfig:
    retry_base_s: float = 1.0
    retry_cap_s: float = 60.0
    progress_every_s: float = 1.0  # the contract's limit on downloading reports


def utc_now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Follows the latest model order: on a thread (``offer``/``start``) or in the caller's.

    It also carries out profiling orders (``offer_profile``), on the same thread so that
    the two never download at once or move the trusted key under each other; a model
    order goes first. ``on_trust_change`` persists a rotated signing key;
    ``on_active_change`` tells the inference loop which model serves now (None: none).
    Neither may raise into a rollout.
    """

    def __init__(
        self,
        store: ModelStore,
        trust: TrustStore,
        source: ArtifactSource,
        status: StatusSink,
        config: DeployConfig | None = None,
        *,
        profile_results: StatusSink | None = None,
        on_trust_change: Callable[[TrustStore], object] | None = None,
        on_active_change: Callable[[InstalledVersion | None], object] | None = None,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = utc_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._trust = trust
        self._source = source
        self._status = status
        self._profile_results = profile_results
        self._config = config or DeployConfig()
        self._on_trust_change = on_trust_change
        self._on_active_change = on_active_change
        self._rng = rng or random.Random()
        self._now = now
        self._clock = clock
        self._cond = threading.Condition()
        self._latest: ModelOrder | None = None
        self._handled: ModelOrder | None = None
        self._latest_profile: ProfileOrder | None = None
        self._handled_profile: ProfileOrder | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        if not trust:
            log.error("%s", REENROLL_HINT)

    @property
    def store(self) -> ModelStore:
        return self._store

    # --- the thread

    def offer(self, order: ModelOrder | None) -> None:
        """Hand over a heartbeat's order; None (no order) changes nothing."""
        if order is None:
            return
        with self._cond:
            if order != self._latest:
                self._latest = order
                self._cond.notify_all()

    def offer_profile(self, order: ProfileOrder | None) -> None:
        """Hand over a heartbeat's profiling order; None changes nothing."""
        if order is None:
            return
        with self._cond:
            if order != self._latest_profile:
                self._latest_profile = order
                self._cond.notify_all()

    def start(self) -> Reconciler:
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while (order := self._next_order()) is not None:
            try:
                if isinstance(order, ProfileOrder):
                    self.profile(order)
                else:
                    self.reconcile(order)
            except Superseded:
                log.info("%s superseded or stopped", _describe(order))
            except Exception:  # the thread must survive a bug in one order's handling
                log.exception("carrying out %s failed", _describe(order))
                self._mark_handled(order)

    def _next_order(self) -> ModelOrder | ProfileOrder | None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._pending() is not None)
            return None if self._stopping else self._pending()

    def _pending(self) -> ModelOrder | ProfileOrder | None:
        return self._unhandled() or self._unhandled_profile()

    def _unhandled(self) -> ModelOrder | None:
        latest = self._latest
        return latest if latest is not None and latest != self._handled else None

    def _unhandled_profile(self) -> ProfileOrder | None:
        latest = self._latest_profile
        return latest if latest is not None and latest != self._handled_profile else None

    def _mark_handled(self, order: ModelOrder | ProfileOrder) -> None:
        if isinstance(order, ProfileOrder):
            self._handled_profile = order
        else:
            self._handled = order

    def _superseded(self, order: ModelOrder | ProfileOrder) -> bool:
        """A newer order of the same kind came; a profile also yields to any model order."""
        if self._stopping:
            return True
        if isinstance(order, ProfileOrder):
            latest_profile = self._latest_profile
            newer = latest_profile is not None and latest_profile != order
            return newer or self._unhandled() is not None
        latest = self._latest
        return latest is not None and latest is not order and latest != order

    def _wait(self, order: ModelOrder | ProfileOrder, delay_s: float) -> None:
        """Sleep before a retry; raise Superseded at once if a newer order comes."""
        with self._cond:
            if self._cond.wait_for(lambda: self._superseded(order), timeout=delay_s):
                raise Superseded(_describe(order))

    # --- one order

    def reconcile(self, order: ModelOrder) -> None:
        """Follow ``order`` to its end: active, failed, or superseded (raised)."""
        try:
            self._follow(order)
        except ManifestRefused as refusal:
            self._refused(order, refusal)
        self._handled = order

    def _follow(self, order: ModelOrder) -> None:
        self._apply_rotations(order.key_rotations)
        plan = plan_order(order, self._trust, self._holdings(), self._now())
        manifest = plan.manifest
        if plan.action is Action.CONFIRM:
            self._report(order, manifest.version, "active", 1.0)
        elif plan.action is Action.REPORT_FAILED:
            assert plan.failure is not None
            failure = plan.failure
            self._report(order, manifest.version, "failed", 0.0, failure.reason, failure.detail)
        elif plan.action is Action.REFRESH:
            self._refresh(order, manifest)
        elif plan.action is Action.DEACTIVATE:
            self._deactivate(order, manifest)
        elif plan.action is Action.SWITCH_BACK:
            self._switch_back(order, manifest)
        else:
            self._install(order, manifest)

    def _apply_rotations(self, chain: tuple[Any, ...]) -> None:
        if self._trust.apply_rotations(chain):
            log.info("signing key rotated; now trusting %s", sorted(self._trust.keys))
            self._notify(self._on_trust_change, self._trust)

    def _holdings(self) -> Holdings:
        links = self._store.links()
        active = self._store.installed(links.active)
        record = self._store.record
        return Holdings(
            active=(active.sha256, active.version) if active else None,
            previous_sha256=links.previous,
            current_version=record.current_version,
            highest_version=record.highest_version,
            failed=dict(record.failed),
        )

    def _refresh(self, order: ModelOrder, manifest: Manifest) -> None:
        self._store.write_manifest(manifest)
        self._accept(manifest.version)
        log.info("manifest version %d re-confirms the active model", manifest.version)
        self._report(order, manifest.version, "active", 1.0)

    def _deactivate(self, order: ModelOrder, manifest: Manifest) -> None:
        self._store.switch_to(None)
        self._accept(manifest.version)
        self._store.collect_garbage()
        log.info("manifest version %d: running no model", manifest.version)
        self._notify(self._on_active_change, None)
        self._report(order, manifest.version, "active", 1.0)

    def _switch_back(self, order: ModelOrder, manifest: Manifest) -> None:
        previous = self._store.previous()
        self._report(order, manifest.version, "verifying", 1.0)
        if previous is None or not self._store.verify_file(previous):
            log.warning("the kept previous version is damaged; downloading it again")
            self._store.forget_previous()
            self._install(order, manifest)
            return
        log.info("manifest version %d: switching back to the kept version", manifest.version)
        self._activate(order, manifest, previous.model_path)

    def _install(self, order: ModelOrder, manifest: Manifest) -> None:
        artifact = manifest.artifact
        assert artifact is not None and order.artifact_url is not None
        self._store.discard_other_parts(artifact.sha256)
        self._store.check_space(artifact.sha256, artifact.size)
        part = self._store.part_path(artifact.sha256)
        log.info("manifest version %d: downloading %s", manifest.version, order.artifact_url)
        self._download(order, manifest, artifact, part)
        self._report(order, manifest.version, "verifying", 1.0)
        staged = self._store.stage(manifest, part)
        self._activate(order, manifest, staged.model_path)

    def _download(
        self, order: ModelOrder, manifest: Manifest, artifact: ArtifactRef, part: Path
    ) -> None:
        progress = _ProgressReports(
            functools.partial(self._report, order, manifest.version, "downloading"),
            self._config.progress_every_s,
            self._clock,
        )
        have = part.stat().st_size if part.exists() else 0
        progress.start(min(have / artifact.size, 1.0) if artifact.size else 0.0)
        assert order.artifact_url is not None
        self._download_with_retries(
            order, order.artifact_url, artifact, part, progress.update, progress.retrying
        )

    def _download_with_retries(
        self,
        order: ModelOrder | ProfileOrder,
        url: str,
        artifact: ArtifactRef,
        part: Path,
        on_progress: ProgressCallback | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """Download until verified, waiting out failures with backoff; Superseded if asked."""
        backoff = Backoff(self._rng, self._config.retry_base_s, self._config.retry_cap_s)
        while True:
            try:
                self._source.download_artifact(
                    url,
                    part,
                    artifact,
                    on_progress=on_progress,
                    should_stop=lambda: self._superseded(order),
                )
                return
            except DownloadStopped as exc:
                raise Superseded(_describe(order)) from exc
            except ManifestRefused as refusal:
                if not refusal.retryable:
                    raise
                delay = backoff.next_delay()
                log.warning(
                    "download failed (%s); retry %d in %.1f s",
                    refusal.detail,
                    backoff.attempt,
                    delay,
                )
                if on_retry is not None:
                    # Not "failed": the server would count an outage as a broken device. The
                    # reason rides along with the downloading state until the retry succeeds.
                    on_retry(f"{refusal.detail}; retry {backoff.attempt} in {delay:.0f} s")
                self._wait(order, delay)

    def _activate(self, order: ModelOrder, manifest: Manifest, model_path: Path) -> None:
        """Switch, health-check, and switch back if the check fails."""
        assert manifest.artifact is not None and manifest.io is not None
        sha256 = manifest.artifact.sha256
        before = self._store.switch_to(sha256)
        try:
            report = health_check(model_path, manifest.io, health_spec(order))
        except ManifestRefused:
            self._store.restore(before)
            if sha256 not in (before.active, before.previous):
                self._store.remove_version(sha256)
            raise
        installed = self._store.write_manifest(manifest)
        self._accept(manifest.version)
        self._store.collect_garbage()
        log.info("manifest version %d active: %s", manifest.version, health_detail(report))
        self._notify(self._on_active_change, installed)
        self._report(order, manifest.version, "active", 1.0, detail=health_detail(report))

    def _accept(self, version: int) -> None:
        self._store.record.accept(version)
        self._store.save_record()

    # --- profiling (docs/rollouts.md, "Profiling")

    def profile(self, order: ProfileOrder) -> None:
        """Time the order's model on this device without installing it, and report it."""
        try:
            body = self._measure(order)
        except ManifestRefused as refusal:
            log.warning("profiling run %s failed: %s", order.run_id, refusal)
            body = profile_result_body(
                order.run_id, "failed", reason=refusal.reason.value, detail=refusal.detail
            )
        self._handled_profile = order
        if self._profile_results is not None:
            self._profile_results.report(body)

    def _measure(self, order: ProfileOrder) -> dict[str, Any]:
        self._apply_rotations(order.key_rotations)
        manifest = verify_manifest(order.manifest, self._trust)
        # No version rule: timing an older model is legitimate, and accepts nothing.
        check_freshness(manifest, self._now(), None)
        if manifest.artifact is None or manifest.io is None:
            raise ManifestRefused(Reason.MALFORMED, "a profiling order must name an artifact")
        path, downloaded = self._file_to_profile(order, manifest.artifact)
        try:
            report = health_check(path, manifest.io, HealthCheckSpec(None, order.runs))
        finally:
            if downloaded:
                path.unlink(missing_ok=True)  # profiled, not installed: give the space back
        log.info(
            "profiling run %s: p50 %.2f ms over %d runs", order.run_id, report.p50_ms, report.runs
        )
        return profile_result_body(
            order.run_id, "measured", report.p50_ms, report.p95_ms, report.runs
        )

    def _file_to_profile(self, order: ProfileOrder, artifact: ArtifactRef) -> tuple[Path, bool]:
        """A staged copy if the device holds one, else a fresh download (True: delete it after)."""
        links = self._store.links()
        if artifact.sha256 in (links.active, links.previous):
            staged = self._store.installed(artifact.sha256)
            if staged is not None and self._store.verify_file(staged):
                return staged.model_path, False
        if order.artifact_url is None:
            raise ManifestRefused(Reason.MALFORMED, "the profiling order has no artifact_url")
        self._store.check_space(artifact.sha256, artifact.size)
        part = self._store.part_path(artifact.sha256)
        self._download_with_retries(order, order.artifact_url, artifact, part)
        return part, True

    def _refused(self, order: ModelOrder, refusal: ManifestRefused) -> None:
        version = peek_version(order.manifest)
        if refusal.reason in PERSISTED_FAILURES and version is not None:
            failure = FailedVersion(refusal.reason.value, refusal.detail, order.deployment_id)
            self._store.record.remember_failure(version, failure)
            self._store.save_record()
        if refusal.reason is Reason.UNSIGNED and not self._trust:
            log.error("refused the order of deployment %s: %s", order.deployment_id, REENROLL_HINT)
            detail = f"{refusal.detail}; {REENROLL_HINT}"
        else:
            log.warning("refused the order of deployment %s: %s", order.deployment_id, refusal)
            detail = refusal.detail
        # The server numbers manifests from 1; a version it cannot match is dropped there.
        self._report(order, version or 1, "failed", 0.0, refusal.reason.value, detail)

    def _report(
        self,
        order: ModelOrder,
        version: int,
        state: str,
        progress: float,
        reason: str = "",
        detail: str = "",
    ) -> None:
        active = self._store.active()
        served = (active.sha256, active.version) if active else None
        self._status.report(
            model_status_body(order.deployment_id, version, state, progress, reason, detail, served)
        )

    @staticmethod
    def _notify(callback: Callable[[Any], object] | None, value: Any) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:
            log.exception("a model-change listener failed")


def _describe(order: ModelOrder | ProfileOrder) -> str:
    if isinstance(order, ProfileOrder):
        return f"the profiling order of run {order.run_id}"
    return f"the order of deployment {order.deployment_id}"


class _ProgressReports:
    """``downloading`` reports: at the start, then at most once per ``every_s``."""

    def __init__(
        self, send: Callable[[float, str, str], None], every_s: float, clock: Callable[[], float]
    ) -> None:
        self._send_report = send
        self._every_s = every_s
        self._clock = clock
        self._last_at = float("-inf")
        self.fraction = 0.0

    def start(self, fraction: float) -> None:
        self.fraction = fraction
        self._send()

    def update(self, fraction: float) -> None:
        self.fraction = fraction
        if self._clock() - self._last_at >= self._every_s:
            self._send()

    def retrying(self, detail: str) -> None:
        self._send(Reason.DOWNLOAD_FAILED.value, detail)

    def _send(self, reason: str = "", detail: str = "") -> None:
        self._last_at = self._clock()
        self._send_report(self.fraction, reason, detail)
