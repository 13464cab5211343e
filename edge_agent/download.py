"""Resumable, verified artifact downloads (docs/rollouts.md, "Download, staging and switch").

A download appends to ``partial/<sha256>.part`` and, after any failure, resumes with
``Range: bytes=N-`` from the bytes it has: a 50 MB model over a flaky uplink must not
start over each time. The bytes are counted and hashed as they arrive, so a server that
sends too much is cut off at ``size + 1`` bytes instead of filling the disk.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from edge_agent.manifest import ArtifactRef, ManifestRefused, Reason

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-\d+/(\d+|\*)$")


class DownloadStopped(Exception):
    """The caller asked the download to stop (a newer order, or the agent stopping).

    Not a refusal: the part file stays, and a later order for the same artifact resumes it.
    """


class ArtifactReceiver:
    """Counts and hashes an artifact's bytes as they arrive, in order."""

    def __init__(self, artifact: ArtifactRef) -> None:
        self.artifact = artifact
        self.restart()

    def restart(self) -> None:
        self.received = 0
        self._digest = hashlib.sha256()

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes; ``size_mismatch`` as soon as there are more than announced."""
        self.received += len(chunk)
        if self.received > self.artifact.size:
            raise ManifestRefused(
                Reason.SIZE_MISMATCH,
                f"the server sent more than the manifest's {self.artifact.size} bytes",
            )
        self._digest.update(chunk)

    @property
    def fraction(self) -> float:
        return self.received / self.artifact.size if self.artifact.size else 1.0

    def finish(self) -> None:
        """``size_mismatch`` for too few bytes, ``hash_mismatch`` for the wrong ones."""
        if self.received != self.artifact.size:
            raise ManifestRefused(
                Reason.SIZE_MISMATCH,
                f"got {self.received} bytes, the manifest says {self.artifact.size}",
            )
        digest = self._digest.hexdigest()
        if digest != self.artifact.sha256:
            raise ManifestRefused(
                Reason.HASH_MISMATCH,
                f"the bytes' SHA-256 is {digest}, the manifest says {self.artifact.sha256}",
            )


ProgressCallback = Callable[[float], None]
StopCheck = Callable[[], bool]


class _Outcome(enum.Enum):
    DONE = "done"
    START_OVER = "start_over"  # the part file does not continue the artifact


def download_artifact(
    http: httpx.Client,
    url: str,
    headers: Mapping[str, str],
    part: Path,
    artifact: ArtifactRef,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> None:
    """Complete ``part`` from ``url`` and verify it against ``artifact``, or refuse.

    ``download_failed`` (the server is away or answered an error) keeps the part file for
    the next try; ``size_mismatch`` and ``hash_mismatch`` delete it, since resuming bad
    bytes cannot help; ``disk_full`` deletes it too, to give the space back.
    """
    receiver = ArtifactReceiver(artifact)

    def fetch() -> _Outcome:
        return _fetch(http, url, headers, part, receiver, on_progress, should_stop)

    try:
        if not _resume_from_part(part, receiver) and fetch() is _Outcome.START_OVER:
            log.info("part file %s does not continue the artifact; starting over", part)
            _discard(part, receiver)
            if fetch() is _Outcome.START_OVER:
                raise ManifestRefused(
                    Reason.DOWNLOAD_FAILED, "the server refused the whole artifact's range"
                )
        receiver.finish()
    except ManifestRefused as refusal:
        if not refusal.retryable:
            part.unlink(missing_ok=True)
        raise


def _resume_from_part(part: Path, receiver: ArtifactReceiver) -> bool:
    """Hash the bytes a previous attempt left; True when they already make the artifact."""
    size = receiver.artifact.size
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        _discard(part, receiver)
        return False
    if have:
        with part.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES * 16):
                receiver.feed(chunk)
    if have == size and have:
        try:
            receiver.finish()
        except ManifestRefused:
            _discard(part, receiver)  # complete but wrong: the bytes on disk went bad
            return False
        return True
    return False


def _discard(part: Path, receiver: ArtifactReceiver) -> None:
    part.unlink(missing_ok=True)
    receiver.restart()


def _fetch(
    http: httpx.Client,
    url: str,
    headers: Mapping[str, str],
    part: Path,
    receiver: ArtifactReceiver,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> _Outcome:
    offset = receiver.received
    request_headers = dict(headers)
    if offset:
        request_headers["Range"] = f"bytes={offset}-"
    try:
        with http.stream("GET", url, headers=request_headers) as response:
            if not continues_part(response, offset, receiver):
                return _Outcome.START_OVER
            _append_body(response, part, receiver, on_progress, should_stop)
    except httpx.TransportError as exc:
        raise ManifestRefused(
            Reason.DOWNLOAD_FAILED,
            f"{type(exc).__name__} after {receiver.received} of {receiver.artifact.size} "
            f"bytes: {exc}",
        ) from exc
    return _Outcome.DONE


def continues_part(response: httpx.Response, offset: int, receiver: ArtifactReceiver) -> bool:
    """Whether the body continues the part file at ``offset``; raises for error answers."""
    status = response.status_code
    if status == 416:  # the part is longer than the artifact the server has
        return False
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        return match is not None and int(match.group(1)) == offset
    if status == 200:
        if offset:
            log.info("the server ignored the Range header; downloading from the start")
            receiver.restart()
        return True
    raise ManifestRefused(Reason.DOWNLOAD_FAILED, f"the server answered {status} for the artifact")


def _append_body(
    response: httpx.Response,
    part: Path,
    receiver: ArtifactReceiver,
    on_progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> None:
    mode = "ab" if receiver.received else "wb"
    try:
        with part.open(mode) as out:
            # Unbuffered: bytes that arrived before a connection broke are kept, not lost.
            for chunk in response.iter_bytes():
                if should_stop is not None and should_stop():
                    raise DownloadStopped(f"stopped after {receiver.received} bytes")
                receiver.feed(chunk)
                out.write(chunk)
                if on_progress is not None:
                    on_progress(receiver.fraction)
    except OSError as exc:  # ENOSPC, EDQUOT, EIO: the disk cannot take the artifact
        raise ManifestRefused(
            Reason.DISK_FULL, f"writing {part.name} failed after {receiver.received} bytes: {exc}"
        ) from exc
