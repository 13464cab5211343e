"""Signed documents: canonical bytes, key ids, every refusal, and key rotation."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge_agent.manifest import (
    MANIFEST_TYPE,
    REFUSAL_REASONS,
    ROTATION_TYPE,
    Manifest,
    ManifestRefused,
    Reason,
    TrustStore,
    b64encode,
    canonical_bytes,
    check_manifest,
    key_id_of,
    public_key_raw,
    sign_document,
    sign_rotation,
    verify_document,
)

from .signing import iso, make_key, manifest_body, signed_manifest

KEY = make_key("server")
OTHER = make_key("attacker")
TRUST = TrustStore.pinned(public_key_raw(KEY))
DATA = b"\x08\x01model bytes"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def refusal(doc: Any, highest: int | None = None, trust: TrustStore = TRUST) -> Reason:
    with pytest.raises(ManifestRefused) as caught:
        check_manifest(doc, trust, NOW, highest)
    return caught.value.reason


def test_reason_codes_are_the_contracts_table_in_order() -> None:
    assert REFUSAL_REASONS == (
        "unsigned",
        "bad_signature",
        "malformed",
        "expired",
        "rollback",
        "disk_full",
        "download_failed",
        "size_mismatch",
        "hash_mismatch",
        "health_check_failed",
    )


def test_canonical_bytes_sort_keys_without_spaces_and_keep_unicode() -> None:
    assert canonical_bytes({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'.encode()


def test_key_id_is_the_first_16_hex_of_the_keys_sha256() -> None:
    raw = public_key_raw(KEY)
    assert len(raw) == 32
    assert key_id_of(raw) == hashlib.sha256(raw).hexdigest()[:16]


def test_a_signed_document_verifies_and_survives_a_json_round_trip() -> None:
    doc = signed_manifest(KEY, 3, DATA, now=NOW)
    assert doc["signatures"][0]["key_id"] == key_id_of(public_key_raw(KEY))
    again = json.loads(json.dumps(doc, indent=3))  # key order and spacing do not matter
    manifest = check_manifest(again, TRUST, NOW, None)
    assert isinstance(manifest, Manifest)
    assert (manifest.version, manifest.artifact and manifest.artifact.size) == (3, len(DATA))
    assert manifest.io and manifest.io.inputs[0].shape == (None, 4)
    assert manifest.model and manifest.model.variant is None
    assert manifest.signed == doc["signed"]


def test_the_first_trusted_signature_counts_and_the_others_are_ignored() -> None:
    doc = signed_manifest(KEY, 3, DATA, now=NOW)
    foreign = {"key_id": "0" * 16, "sig": "not even base64"}
    doc["signatures"] = [foreign, *doc["signatures"]]
    assert verify_document(doc, TRUST.keys) == doc["signed"]


@pytest.mark.parametrize(
    "signatures",
    [None, [], "x", [{"sig": "AAAA"}], [{"key_id": "0123456789abcdef", "sig": "AAAA"}]],
)
def test_no_trusted_signature_is_unsigned(signatures: Any) -> None:
    doc = signed_manifest(KEY, 3, DATA, now=NOW)
    doc["signatures"] = signatures
    assert refusal(doc) is Reason.UNSIGNED


def test_a_document_signed_by_an_unknown_key_is_unsigned() -> None:
    assert refusal(signed_manifest(OTHER, 3, DATA, now=NOW)) is Reason.UNSIGNED


def test_an_empty_trust_store_refuses_everything_as_unsigned() -> None:
    assert refusal(signed_manifest(KEY, 3, DATA, now=NOW), trust=TrustStore()) is Reason.UNSIGNED


def test_a_tampered_body_is_a_bad_signature() -> None:
    doc = signed_manifest(KEY, 3, DATA, now=NOW)
    doc["signed"]["artifact"]["sha256"] = "0" * 64
    assert refusal(doc) is Reason.BAD_SIGNATURE


def test_a_signature_by_another_key_under_the_trusted_key_id_is_bad() -> None:
    doc = signed_manifest(OTHER, 3, DATA, now=NOW)
    doc["signatures"][0]["key_id"] = key_id_of(public_key_raw(KEY))
    assert refusal(doc) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("sig", ["", "@@@", b64encode(b"short"), 42])
def test_a_signature_that_is_not_one_is_bad(sig: Any) -> None:
    doc = signed_manifest(KEY, 3, DATA, now=NOW)
    doc["signatures"][0]["sig"] = sig
    assert refusal(doc) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("doc", [None, [], "text", {"signatures": []}, {"signed": [1]}])
def test_a_document_that_is_no_envelope_is_malformed(doc: Any) -> None:
    assert refusal(doc) is Reason.MALFORMED


def _signed_with(change: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    body = manifest_body(3, DATA, now=NOW)
    body.update(copy.deepcopy(change))
    if drop:
        body.pop(drop)
    return sign_document(KEY, body)


@pytest.mark.parametrize(
    "change",
    [
        {"_type": ROTATION_TYPE},
        {"version": -1},
        {"version": "3"},
        {"version": True},
        {"expires": "next week"},
        {"expires": "2026-12-05T10:00:00"},  # no zone: ambiguous
        {"artifact": {"sha256": "ABC", "size": 1, "format": "onnx"}},
        {"artifact": {"sha256": "a" * 64, "size": -1, "format": "onnx"}},
        {"artifact": {"sha256": "a" * 64, "size": 1, "format": "tflite"}},
        {"model": None},
        {"model": {"id": "m", "name": "n", "version": 1}},
        {"io": None},
        {"io": {"inputs": [], "outputs": [{"name": "y", "shape": [1], "dtype": "float32"}]}},
        {
            "io": {
                "inputs": [{"name": "x", "shape": [1.5], "dtype": "float32"}],
                "outputs": [{"name": "y", "shape": [1], "dtype": "float32"}],
            }
        },
        {
            "io": {
                "inputs": [{"name": "x", "shape": [1], "dtype": "complex64"}],
                "outputs": [{"name": "y", "shape": [1], "dtype": "float32"}],
            }
        },
    ],
)
def test_a_wrong_field_is_malformed(change: dict[str, Any]) -> None:
    with pytest.raises(ManifestRefused) as caught:
        check_manifest(_signed_with(change), TRUST, NOW, None)
    assert caught.value.reason is Reason.MALFORMED
    assert next(iter(change)) in caught.value.detail


@pytest.mark.parametrize("missing", ["_type", "version", "created", "expires"])
def test_a_missing_field_is_malformed(missing: str) -> None:
    assert refusal(_signed_with({}, drop=missing)) is Reason.MALFORMED


def test_the_run_nothing_order_needs_no_model_or_io() -> None:
    manifest = check_manifest(signed_manifest(KEY, 4, None, now=NOW), TRUST, NOW, 3)
    assert (manifest.artifact, manifest.model, manifest.io) == (None, None, None)


def test_an_expired_manifest_is_refused() -> None:
    doc = signed_manifest(KEY, 3, DATA, now=NOW - timedelta(days=8))
    assert refusal(doc) is Reason.EXPIRED


def test_a_version_below_the_highest_accepted_is_a_rollback() -> None:
    doc = signed_manifest(KEY, 3, DATA, now=NOW)
    assert refusal(doc, highest=4) is Reason.ROLLBACK
    assert check_manifest(doc, TRUST, NOW, 3).version == 3  # the same version is no rollback


def test_checks_run_in_the_tables_order() -> None:
    # expired and a rollback, but badly signed: the signature is what gets reported
    doc = signed_manifest(KEY, 1, DATA, now=NOW - timedelta(days=30))
    doc["signed"]["version"] = 2
    assert refusal(doc, highest=5) is Reason.BAD_SIGNATURE


# --- trust stores and rotations

NEW = make_key("server-2")
NEWEST = make_key("server-3")


def test_a_trust_store_round_trips_through_the_signing_object() -> None:
    signing = TRUST.to_signing_json()
    assert signing is not None and signing["algorithm"] == "ed25519"
    assert TrustStore.from_signing_json(signing).keys == TRUST.keys
    assert TrustStore().to_signing_json() is None


@pytest.mark.parametrize(
    "signing",
    [
        None,
        {"algorithm": "rsa", "key_id": "x", "public_key": "AAAA"},
        {"algorithm": "ed25519", "key_id": "x", "public_key": b64encode(b"short")},
        {"algorithm": "ed25519", "key_id": "0" * 16, "public_key": b64encode(public_key_raw(KEY))},
    ],
)
def test_a_bad_signing_object_is_refused(signing: Any) -> None:
    with pytest.raises(ValueError):
        TrustStore.from_signing_json(signing)


def test_a_rotation_signed_by_the_pinned_key_moves_trust() -> None:
    store = TrustStore.pinned(public_key_raw(KEY))
    chain = [sign_rotation(KEY, NEW, iso(NOW)), sign_rotation(NEW, NEWEST, iso(NOW))]
    assert store.apply_rotations(chain) == [
        key_id_of(public_key_raw(NEW)),
        key_id_of(public_key_raw(NEWEST)),
    ]
    assert list(store.keys) == [key_id_of(public_key_raw(NEWEST))]  # the old ones are dropped
    assert refusal(signed_manifest(KEY, 3, DATA, now=NOW), trust=store) is Reason.UNSIGNED
    check_manifest(signed_manifest(NEWEST, 3, DATA, now=NOW), store, NOW, None)
    assert store.apply_rotations(chain) == []  # already applied: nothing to do


def test_a_rotation_signed_by_an_untrusted_key_is_ignored() -> None:
    store = TrustStore.pinned(public_key_raw(KEY))
    assert store.apply_rotations([sign_rotation(OTHER, NEW, iso(NOW))]) == []
    assert list(store.keys) == [key_id_of(public_key_raw(KEY))]


def test_a_forged_rotation_naming_the_pinned_key_refuses_and_changes_nothing() -> None:
    store = TrustStore.pinned(public_key_raw(KEY))
    forged = sign_rotation(OTHER, NEW, iso(NOW))
    forged["signed"]["previous_key_id"] = key_id_of(public_key_raw(KEY))
    forged["signatures"][0]["key_id"] = key_id_of(public_key_raw(KEY))
    with pytest.raises(ManifestRefused) as caught:
        store.apply_rotations([forged])
    assert caught.value.reason is Reason.BAD_SIGNATURE
    assert list(store.keys) == [key_id_of(public_key_raw(KEY))]


def test_a_rotation_whose_key_id_lies_is_malformed() -> None:
    store = TrustStore.pinned(public_key_raw(KEY))
    statement = sign_rotation(KEY, NEW, iso(NOW))
    body = dict(statement["signed"], key_id="0" * 16)
    with pytest.raises(ManifestRefused) as caught:
        store.apply_rotations([sign_document(KEY, body)])
    assert caught.value.reason is Reason.MALFORMED


def test_a_rotation_statement_is_no_manifest() -> None:
    statement = sign_rotation(KEY, NEW, iso(NOW))
    assert statement["signed"]["_type"] == ROTATION_TYPE != MANIFEST_TYPE
    assert refusal(statement) is Reason.MALFORMED
