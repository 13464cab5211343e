"""The agent's models on disk: partial downloads, staged versions, and the active switch.

Layout under ``<state dir>/models/`` (docs/rollouts.md):

- ``partial/<sha256>.part``: a download in progress, resumed from where it stopped;
- ``versions/<sha256>/model.onnx`` and ``manifest.json``: verified, staged versions;
- ``active`` and ``previous``: symbolic links into ``versions/``, each replaced with one
  ``os.replace`` of a temporary link, so a crash leaves the old link or the new one;
- ``record.json``: the highest manifest version accepted, the version the device follows
  now, and the versions that failed (so they are not tried again).

The links are the truth about what runs; the record only remembers what the links cannot.
Only the active and the previous versions are kept: the previous one makes a
server-ordered rollback a local switch, older ones are garbage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.manifest import Manifest, ManifestRefused, Reason, parse_manifest
from edge_agent.state import StateError, read_json, write_private_json

log = logging.getLogger(__name__)

MODELS_DIR = "models"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
RECORD_FILE = "record.json"
ACTIVE_LINK = "active"
PREVIOUS_LINK = "previous"
MAX_FAILED_REMEMBERED = 100
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FailedVersion:
    reason: str
    detail: str
    deployment_id: str = ""


@dataclass
class ModelRecord:
    """What the links cannot tell: version bookkeeping that survives restarts."""

    highest_version: int | None = None  # the highest manifest version accepted
    current_version: int | None = None  # the manifest the device follows now
    failed: dict[int, FailedVersion] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "highest_version": self.highest_version,
            "current_version": self.current_version,
            "failed": {
                str(version): {
                    "reason": f.reason,
                    "detail": f.detail,
                    "deployment_id": f.deployment_id,
                }
                for version, f in self.failed.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRecord:
        failed = {
            int(version): FailedVersion(
                str(item.get("reason", "")),
                str(item.get("detail", "")),
                str(item.get("deployment_id", "")),
            )
            for version, item in (data.get("failed") or {}).items()
        }
        return cls(
            _optional_int(data.get("highest_version")),
            _optional_int(data.get("current_version")),
            failed,
        )

    def accept(self, version: int) -> None:
        """The device now follows ``version``: it becomes current, and the floor for rollbacks."""
        self.current_version = version
        self.highest_version = max(version, self.highest_version or 0)

    def remember_failure(self, version: int, failure: FailedVersion) -> None:
        self.failed[version] = failure
        for oldest in sorted(self.failed)[:-MAX_FAILED_REMEMBERED]:
            del self.failed[oldest]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class InstalledVersion:
    """A staged version: its file, and the manifest it was last accepted under."""

    sha256: str
    directory: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def size(self) -> int:
        return self.model_path.stat().st_size


@dataclass(frozen=True)
class Links:
    """Which versions ``active`` and ``previous`` point at (sha256s), to switch back to."""

    active: str | None
    previous: str | None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """One agent's ``models/`` directory. Used from the reconciler's thread only."""

    def __init__(self, state_dir: Path, quota_bytes: int | None = None) -> None:
        self.root = state_dir / MODELS_DIR
        self.partial_dir = self.root / "partial"
        self.versions_dir = self.root / "versions"
        self.quota_bytes = quota_bytes
        for directory in (self.root, self.partial_dir, self.versions_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.record = self._load_record()

    # --- the record

    def _load_record(self) -> ModelRecord:
        path = self.root / RECORD_FILE
        if not path.exists():
            return ModelRecord()
        try:
            return ModelRecord.from_json(read_json(path))
        except (StateError, ValueError, TypeError, AttributeError) as exc:
            # Losing the record only loses the rollback floor and the failure memory; the
            # links still say what runs, so carry on rather than refuse to start.
            log.error("model record %s is unreadable (%s); starting a new one", path, exc)
            return ModelRecord()

    def save_record(self) -> None:
        write_private_json(self.root / RECORD_FILE, self.record.to_json())

    # --- what is installed

    def links(self) -> Links:
        return Links(self._target(ACTIVE_LINK), self._target(PREVIOUS_LINK))

    def _target(self, link: str) -> str | None:
        try:
            target = os.readlink(self.root / link)
        except (FileNotFoundError, OSError):
            return None
        sha256 = Path(target).name
        return sha256 if (self.versions_dir / sha256).is_dir() else None

    def installed(self, sha256: str | None) -> InstalledVersion | None:
        """The staged version ``sha256`` (None when absent or its manifest is unreadable)."""
        if sha256 is None:
            return None
        directory = self.versions_dir / sha256
        try:
            # Verified when it was staged; the key that signed it may have rotated since.
            signed = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))["signed"]
            manifest = parse_manifest(signed)
        except (OSError, ValueError, KeyError, TypeError, ManifestRefused) as exc:
            log.error("staged version %s is unreadable: %s", sha256, exc)
            return None
        if not (directory / MODEL_FILE).is_file():
            return None
        return InstalledVersion(sha256, directory, manifest)

    def active(self) -> InstalledVersion | None:
        return self.installed(self._target(ACTIVE_LINK))

    def previous(self) -> InstalledVersion | None:
        return self.installed(self._target(PREVIOUS_LINK))

    def verify_file(self, version: InstalledVersion) -> bool:
        """Whether the staged file still has the bytes its manifest names (disks rot)."""
        try:
            return file_sha256(version.model_path) == version.sha256
        except OSError:
            return False

    # --- downloads

    def part_path(self, sha256: str) -> Path:
        return self.partial_dir / f"{sha256}.part"

    def discard_other_parts(self, keep_sha256: str) -> None:
        """One download at a time: a part for another artifact only takes space."""
        for part in self.partial_dir.glob("*.part"):
            if part.name != f"{keep_sha256}.part":
                part.unlink(missing_ok=True)

    def check_space(self, sha256: str, size: int) -> None:
        """Refuse ``disk_full`` unless the artifact fits the free space and the quota.

        The quota bounds the models kept once the switch succeeds: the new one and the
        active one it replaces (which becomes the previous). The version before that is
        dropped at the switch, so it does not count.
        """
        part = self.part_path(sha256)
        have = part.stat().st_size if part.exists() else 0
        needed = max(size - have, 0)
        free = shutil.disk_usage(self.root).free
        if needed > free:
            raise ManifestRefused(
                Reason.DISK_FULL,
                f"the artifact needs {needed} more bytes and {self.root} has {free} free",
            )
        if self.quota_bytes is None:
            return
        active = self.active()
        kept = size + (active.size if active and active.sha256 != sha256 else 0)
        if kept > self.quota_bytes:
            raise ManifestRefused(
                Reason.DISK_FULL,
                f"the artifact ({size} bytes) and the active model would take {kept} bytes; "
                f"the model quota is {self.quota_bytes} bytes (--model-quota-bytes)",
            )

    # --- staging and switching

    def stage(self, manifest: Manifest, part: Path) -> InstalledVersion:
        """Move a verified download into ``versions/<sha256>/`` beside its manifest."""
        assert manifest.artifact is not None
        directory = self.versions_dir / manifest.artifact.sha256
        directory.mkdir(mode=0o700, exist_ok=True)
        os.replace(part, directory / MODEL_FILE)
        return self.write_manifest(manifest, directory)

    def write_manifest(self, manifest: Manifest, directory: Path | None = None) -> InstalledVersion:
        """Store the manifest a version is (now) accepted under, e.g. a re-signed one."""
        assert manifest.artifact is not None
        directory = directory or self.versions_dir / manifest.artifact.sha256
        write_private_json(directory / MANIFEST_FILE, {"signed": manifest.signed})
        return InstalledVersion(manifest.artifact.sha256, directory, manifest)

    def switch_to(self, sha256: str | None) -> Links:
        """Make ``sha256`` active (None: run nothing); the active one becomes the previous.

        Returns the links as they were, for ``restore``. Previous is written first: a crash
        in between leaves both links on the old active version, which still runs.
        """
        before = self.links()
        if before.active is not None and before.active != sha256:
            self._point(PREVIOUS_LINK, before.active)
        self._point(ACTIVE_LINK, sha256)
        return before

    def restore(self, links: Links) -> None:
        """Put both links back as ``switch_to`` found them."""
        self._point(ACTIVE_LINK, links.active)
        self._point(PREVIOUS_LINK, links.previous)

    def _point(self, link: str, sha256: str | None) -> None:
        path = self.root / link
        if sha256 is None:
            path.unlink(missing_ok=True)
        else:
            temporary = self.root / f".{link}.{os.getpid()}.tmp"
            temporary.unlink(missing_ok=True)
            os.symlink(Path("versions") / sha256, temporary)
            os.replace(temporary, path)
        _fsync_dir(self.root)

    def forget_previous(self) -> None:
        """Drop the previous version (its file went bad); it is downloaded again if ordered."""
        sha256 = self.links().previous
        self._point(PREVIOUS_LINK, None)
        if sha256 is not None:
            self.remove_version(sha256)

    def remove_version(self, sha256: str) -> None:
        """Delete a staged version that failed (never one a link points at)."""
        links = self.links()
        if sha256 not in (links.active, links.previous):
            shutil.rmtree(self.versions_dir / sha256, ignore_errors=True)

    def collect_garbage(self) -> list[str]:
        """Delete every staged version but the active and the previous; returns their sha256s."""
        links = self.links()
        keep = {links.active, links.previous}
        removed = [sha for sha in self._staged() if sha not in keep]
        for sha256 in removed:
            shutil.rmtree(self.versions_dir / sha256, ignore_errors=True)
        return removed

    def _staged(self) -> Iterator[str]:
        return (entry.name for entry in self.versions_dir.iterdir() if entry.is_dir())


def _fsync_dir(directory: Path) -> None:
    # Persist the link switch itself; without it a power cut may bring back the old link.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
