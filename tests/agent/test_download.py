"""Artifact downloads against the stand-in: resume, restarts, and every refusal."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_agent.download import DownloadStopped, download_artifact
from edge_agent.manifest import ArtifactRef, ManifestRefused, Reason

from .standin import ARTIFACTS_PATH, StandInControlPlane

DATA = os.urandom(300_000)  # several 64 KiB chunks
SHA = hashlib.sha256(DATA).hexdigest()
ARTIFACT = ArtifactRef(SHA, len(DATA), "onnx")


@pytest.fixture
def http(control_plane: StandInControlPlane) -> Iterator[httpx.Client]:
    _, credential = control_plane.register()
    with httpx.Client(
        base_url=control_plane.url,
        headers={"Authorization": f"Bearer {credential}"},
        timeout=httpx.Timeout(5.0),
    ) as client:
        yield client


def fetch(http: httpx.Client, part: Path, artifact: ArtifactRef = ARTIFACT, **kw: object) -> None:
    download_artifact(http, f"{ARTIFACTS_PATH}{artifact.sha256}/", {}, part, artifact, **kw)  # type: ignore[arg-type]


def refusal(http: httpx.Client, part: Path, artifact: ArtifactRef = ARTIFACT) -> Reason:
    with pytest.raises(ManifestRefused) as caught:
        fetch(http, part, artifact)
    return caught.value.reason


def test_a_download_is_complete_verified_and_reports_progress(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA)
    progress: list[float] = []
    part = tmp_path / f"{SHA}.part"
    fetch(http, part, on_progress=progress.append)
    assert part.read_bytes() == DATA
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert control_plane.artifact_requests == [(SHA, None)]


def test_a_cut_connection_resumes_from_the_bytes_it_has(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA)
    control_plane.cut_artifacts_after = [100_000]
    part = tmp_path / f"{SHA}.part"
    assert refusal(http, part) is Reason.DOWNLOAD_FAILED
    kept = part.stat().st_size
    assert 0 < kept <= 100_000  # the bytes that arrived are kept for the next try
    fetch(http, part)
    assert part.read_bytes() == DATA
    assert control_plane.artifact_requests[-1] == (SHA, f"bytes={kept}-")


def test_a_server_that_ignores_range_restarts_the_file(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA)
    control_plane.ignore_range = True
    part = tmp_path / f"{SHA}.part"
    part.write_bytes(DATA[:5000])
    fetch(http, part)
    assert part.read_bytes() == DATA


def test_a_part_longer_than_the_servers_artifact_is_discarded_after_416(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA[:1000], sha256=SHA)  # the server's file is shorter
    part = tmp_path / f"{SHA}.part"
    part.write_bytes(DATA[:2000])
    assert refusal(http, part) is Reason.SIZE_MISMATCH  # 416, then 1000 of 300000 bytes
    assert [r for _, r in control_plane.artifact_requests] == ["bytes=2000-", None]
    assert not part.exists()


def test_a_part_longer_than_the_manifests_size_is_discarded_without_asking(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA)
    part = tmp_path / f"{SHA}.part"
    part.write_bytes(DATA + b"trailing junk")
    fetch(http, part)
    assert part.read_bytes() == DATA
    assert control_plane.artifact_requests == [(SHA, None)]


def test_a_complete_part_needs_no_request(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    part = tmp_path / f"{SHA}.part"
    part.write_bytes(DATA)
    fetch(http, part)
    assert control_plane.artifact_requests == []


def test_tampered_bytes_are_a_hash_mismatch_and_deleted(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(bytes(reversed(DATA)), sha256=SHA)
    part = tmp_path / f"{SHA}.part"
    assert refusal(http, part) is Reason.HASH_MISMATCH
    assert not part.exists()


def test_too_many_bytes_are_a_size_mismatch(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA + os.urandom(2_000_000), sha256=SHA)
    part = tmp_path / f"{SHA}.part"
    progress: list[float] = []
    with pytest.raises(ManifestRefused) as caught:
        fetch(http, part, on_progress=progress.append)
    assert caught.value.reason is Reason.SIZE_MISMATCH
    assert max(progress) <= 1.0  # it stopped reading at the announced size
    assert not part.exists()


def test_too_few_bytes_in_a_complete_answer_are_a_size_mismatch(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA[:-1], sha256=SHA)
    assert refusal(http, tmp_path / f"{SHA}.part") is Reason.SIZE_MISMATCH


@pytest.mark.parametrize("status", [404, 503])
def test_an_error_answer_is_a_download_failure(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path, status: int
) -> None:
    control_plane.add_artifact(DATA)
    control_plane.artifact_status = status
    with pytest.raises(ManifestRefused) as caught:
        fetch(http, tmp_path / f"{SHA}.part")
    assert caught.value.reason is Reason.DOWNLOAD_FAILED and str(status) in caught.value.detail


def test_a_server_that_is_gone_is_a_download_failure_that_keeps_the_part(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    part = tmp_path / f"{SHA}.part"
    part.write_bytes(DATA[:10])
    control_plane.stop()
    assert refusal(http, part) is Reason.DOWNLOAD_FAILED
    assert part.read_bytes() == DATA[:10]


def test_a_full_disk_is_disk_full(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    control_plane.add_artifact(DATA)
    part = tmp_path / f"{SHA}.part"
    part.symlink_to("/dev/full")  # every write fails with ENOSPC
    assert refusal(http, part) is Reason.DISK_FULL


def test_a_stopped_download_keeps_its_part(
    control_plane: StandInControlPlane, http: httpx.Client, tmp_path: Path
) -> None:
    control_plane.add_artifact(DATA)
    part = tmp_path / f"{SHA}.part"
    progress: list[float] = []
    with pytest.raises(DownloadStopped):
        fetch(http, part, on_progress=progress.append, should_stop=lambda: bool(progress))
    assert 0 < part.stat().st_size < len(DATA)
    fetch(http, part)
    assert part.read_bytes() == DATA
