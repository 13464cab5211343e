"""The on-disk model store: staging, atomic switches, the record, space checks, GC."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from edge_agent.manifest import Manifest, ManifestRefused, Reason, parse_manifest
from edge_agent.modelstore import FailedVersion, Links, ModelStore

from .signing import manifest_body


def manifest_for(version: int, data: bytes) -> Manifest:
    return parse_manifest(manifest_body(version, data))


def install(store: ModelStore, version: int, data: bytes) -> str:
    manifest = manifest_for(version, data)
    assert manifest.artifact is not None
    part = store.part_path(manifest.artifact.sha256)
    part.write_bytes(data)
    store.stage(manifest, part)
    store.switch_to(manifest.artifact.sha256)
    return manifest.artifact.sha256


def test_a_switch_keeps_the_previous_version_and_collects_older_ones(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = install(store, 1, b"one")
    assert store.links() == Links(first, None)
    second = install(store, 2, b"two")
    assert store.links() == Links(second, first)
    third = install(store, 3, b"three")
    assert store.links() == Links(third, second)
    assert store.collect_garbage() == [first]
    assert sorted(p.name for p in store.versions_dir.iterdir()) == sorted([second, third])
    active = store.active()
    assert active is not None and active.version == 3
    assert active.model_path.read_bytes() == b"three"
    assert os.readlink(store.root / "active") == f"versions/{third}"  # relative: movable


def test_restore_puts_both_links_back(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = install(store, 1, b"one")
    second = install(store, 2, b"two")
    before = store.switch_to(None)
    assert store.links() == Links(None, second)
    store.restore(before)
    assert store.links() == Links(second, first)


def test_a_link_to_a_missing_version_reads_as_none(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = install(store, 1, b"one")
    shutil.rmtree(store.versions_dir / sha)
    assert store.links() == Links(None, None) and store.active() is None


def test_the_record_survives_a_restart(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.record.accept(5)
    store.record.accept(3)
    store.record.remember_failure(7, FailedVersion("hash_mismatch", "bad bytes", "d-1"))
    store.save_record()
    again = ModelStore(tmp_path).record
    assert (again.highest_version, again.current_version) == (5, 3)
    assert again.failed == {7: FailedVersion("hash_mismatch", "bad bytes", "d-1")}


def test_an_unreadable_record_starts_afresh(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    (store.root / "record.json").write_text("{not json")
    assert ModelStore(tmp_path).record.highest_version is None


def test_verify_file_notices_rotten_bytes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    install(store, 1, b"one")
    active = store.active()
    assert active is not None and store.verify_file(active)
    active.model_path.write_bytes(b"onf")
    assert not store.verify_file(active)


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_an_artifact_larger_than_the_free_space_is_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1000, 900, 100))
    sha = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(ManifestRefused) as caught:
        store.check_space(sha, 101)
    assert caught.value.reason is Reason.DISK_FULL
    store.part_path(sha).write_bytes(b"1")  # a resumed download needs only the rest
    store.check_space(sha, 101)


def test_the_quota_counts_the_new_model_and_the_one_it_replaces(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, quota_bytes=10)
    install(store, 1, b"12345")
    sha = hashlib.sha256(b"new").hexdigest()
    store.check_space(sha, 5)
    with pytest.raises(ManifestRefused) as caught:
        store.check_space(sha, 6)
    assert caught.value.reason is Reason.DISK_FULL
    assert "--model-quota-bytes" in caught.value.detail


def test_other_partial_downloads_are_discarded(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.part_path("a" * 64).write_bytes(b"old")
    store.part_path("b" * 64).write_bytes(b"current")
    store.discard_other_parts("b" * 64)
    assert [p.name for p in store.partial_dir.iterdir()] == [f"{'b' * 64}.part"]
