"""Signed documents of the rollout protocol (docs/rollouts.md): the one implementation.

The control plane signs with these functions and the agent verifies with them, so the two
can never disagree on the canonical bytes, the key ids or the field rules. It depends on
the standard library and ``cryptography`` only, so the server may import it freely.

Everything the agent refuses is a ``ManifestRefused`` carrying one of ``REFUSAL_REASONS``,
the codes of the contract's table, in the order the agent checks them.
"""

from __future__ import annotations

import base64
import binascii
import copy
import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MANIFEST_TYPE = "triad.artifact-manifest/1"
ROTATION_TYPE = "triad.key-rotation/1"
SIGNING_ALGORITHM = "ed25519"
PUBLIC_KEY_BYTES = 32
ARTIFACT_FORMATS = ("onnx",)
# io dtypes the agent can build a probe for; numpy spells them the same way.
IO_DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class Reason(enum.StrEnum):
    """Why an agent refuses an order: the codes of the contract's table, in checking order."""

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    ROLLBACK = "rollback"
    DISK_FULL = "disk_full"
    DOWNLOAD_FAILED = "download_failed"
    SIZE_MISMATCH = "size_mismatch"
    HASH_MISMATCH = "hash_mismatch"
    HEALTH_CHECK_FAILED = "health_check_failed"


REFUSAL_REASONS: tuple[str, ...] = tuple(reason.value for reason in Reason)


class ManifestRefused(Exception):
    """The agent will not run what an order asks for; ``reason`` is a ``Reason`` code.

    ``detail`` says it in words for the operator. Only ``download_failed`` is worth
    retrying as it stands: every other reason needs a different order.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def retryable(self) -> bool:
        return self.reason is Reason.DOWNLOAD_FAILED


# --- canonical form, key ids, signatures


def canonical_bytes(signed: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, UTF-8 (never \\u escapes)."""
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def key_id_of(public_key_raw: bytes) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def public_key_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64encode(data: bytes) -> str:
    """Standard alphabet, padded: the encoding of every key and signature in the protocol."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: Any) -> bytes:
    """Strict inverse of ``b64encode``; ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not base64: {exc}") from exc


def sign_document(private_key: Ed25519PrivateKey, signed: Mapping[str, Any]) -> dict[str, Any]:
    """``{"signed": …, "signatures": [{"key_id", "sig"}]}`` with one Ed25519 signature."""
    body = copy.deepcopy(dict(signed))
    signature = private_key.sign(canonical_bytes(body))
    key_id = key_id_of(public_key_raw(private_key))
    return {"signed": body, "signatures": [{"key_id": key_id, "sig": b64encode(signature)}]}


def verify_document(doc: Any, trusted: Mapping[str, bytes]) -> dict[str, Any]:
    """Return ``doc["signed"]`` once the first signature by a trusted key id verifies.

    Raises ``unsigned`` when no signature names a trusted key, ``bad_signature`` when that
    one does not verify, ``malformed`` when the envelope itself is not a signed document.
    """
    if not isinstance(doc, Mapping):
        raise ManifestRefused(Reason.MALFORMED, "a signed document must be a JSON object")
    signed = doc.get("signed")
    if not isinstance(signed, dict):
        raise ManifestRefused(Reason.MALFORMED, "the document has no 'signed' object")
    signatures = doc.get("signatures")
    entries = signatures if isinstance(signatures, list) else []
    entry = next(
        (
            item
            for item in entries
            if isinstance(item, Mapping)
            and isinstance(item.get("key_id"), str)
            and item["key_id"] in trusted
        ),
        None,
    )
    if entry is None:
        named = sorted(_signed_by(entries))
        raise ManifestRefused(
            Reason.UNSIGNED,
            f"no signature by a trusted key (signed by {named or 'nobody'}, "
            f"trusted: {sorted(trusted) or 'none'})",
        )
    _verify_signature(trusted[entry["key_id"]], entry["key_id"], entry.get("sig"), signed)
    return signed


def _verify_signature(raw_key: bytes, key_id: str, sig: Any, signed: dict[str, Any]) -> None:
    try:
        signature = b64decode(sig)
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, canonical_bytes(signed))
    except (ValueError, InvalidSignature) as exc:
        raise ManifestRefused(
            Reason.BAD_SIGNATURE, f"the signature by key {key_id} does not verify"
        ) from exc


# --- trust: pinned keys and rotation statements


def parse_public_key(public_key_b64: Any) -> bytes:
    """The raw 32 bytes of a base64 Ed25519 public key; ValueError if it is not one."""
    raw = b64decode(public_key_b64)
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_BYTES} bytes, not {len(raw)}")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


class TrustStore:
    """The public keys an agent trusts, by key id: pinned at enrollment, moved by rotations.

    An agent never trusts a key it was not given at enrollment or through a rotation
    statement signed by a key it already trusted; adopting the new key drops the old one.
    """

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for key_id, raw in (keys or {}).items():
            if key_id != key_id_of(raw):
                raise ValueError(f"key id {key_id} does not name the key given for it")
            self._keys[key_id] = bytes(raw)

    @classmethod
    def pinned(cls, public_key_raw: bytes) -> TrustStore:
        return cls({key_id_of(public_key_raw): public_key_raw})

    @classmethod
    def from_signing_json(cls, signing: Any) -> TrustStore:
        """From the enrollment answer's ``signing`` object; ValueError if it is not valid."""
        if not isinstance(signing, Mapping):
            raise ValueError("'signing' must be an object")
        if signing.get("algorithm") != SIGNING_ALGORITHM:
            raise ValueError(f"unsupported signing algorithm {signing.get('algorithm')!r}")
        raw = parse_public_key(signing.get("public_key"))
        if signing.get("key_id") != key_id_of(raw):
            raise ValueError(f"key_id {signing.get('key_id')!r} does not match the public key")
        return cls.pinned(raw)

    def to_signing_json(self) -> dict[str, str] | None:
        """The ``signing`` object an agent keeps in its state file (None: no key pinned)."""
        if not self._keys:
            return None
        key_id, raw = next(iter(self._keys.items()))
        return {"algorithm": SIGNING_ALGORITHM, "key_id": key_id, "public_key": b64encode(raw)}

    @property
    def keys(self) -> dict[str, bytes]:
        return dict(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __bool__(self) -> bool:
        return bool(self._keys)

    def apply_rotations(self, chain: Iterable[Any]) -> list[str]:
        """Adopt each rotation statement a trusted key signed, oldest first.

        Statements whose previous key this store does not trust (the older links of the
        chain, or another fleet's) are skipped. One that claims a trusted previous key
        but does not verify, or is malformed, refuses the whole order. Returns the key
        ids adopted, so the caller knows to persist the change.
        """
        adopted: list[str] = []
        for statement in chain:
            previous_id = _previous_key_id(statement)
            if previous_id is None or previous_id not in self._keys:
                continue
            signed = verify_document(statement, {previous_id: self._keys[previous_id]})
            new_id, new_raw = parse_rotation(signed)
            del self._keys[previous_id]
            self._keys[new_id] = new_raw
            adopted.append(new_id)
        return adopted


def _previous_key_id(statement: Any) -> str | None:
    signed = statement.get("signed") if isinstance(statement, Mapping) else None
    previous = signed.get("previous_key_id") if isinstance(signed, Mapping) else None
    return previous if isinstance(previous, str) else None


def parse_rotation(signed: Mapping[str, Any]) -> tuple[str, bytes]:
    """The (key id, raw key) a verified rotation statement hands over to."""
    if signed.get("_type") != ROTATION_TYPE:
        raise ManifestRefused(Reason.MALFORMED, f"a rotation statement's _type is {ROTATION_TYPE}")
    try:
        raw = parse_public_key(signed.get("public_key"))
    except ValueError as exc:
        raise ManifestRefused(Reason.MALFORMED, f"rotation statement: public_key: {exc}") from exc
    if signed.get("key_id") != key_id_of(raw):
        raise ManifestRefused(
            Reason.MALFORMED, "rotation statement: key_id does not match its public_key"
        )
    _timestamp(signed, "created", "rotation statement")
    return key_id_of(raw), raw


def sign_rotation(
    previous_key: Ed25519PrivateKey, new_key: Ed25519PrivateKey, created: str
) -> dict[str, Any]:
    """The statement by which ``previous_key`` hands trust over to ``new_key``."""
    new_raw = public_key_raw(new_key)
    return sign_document(
        previous_key,
        {
            "_type": ROTATION_TYPE,
            "previous_key_id": key_id_of(public_key_raw(previous_key)),
            "key_id": key_id_of(new_raw),
            "public_key": b64encode(new_raw),
            "created": created,
        },
    )


# --- the artifact manifest


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None: a free axis (the batch, say)
    dtype: str


@dataclass(frozen=True)
class IoSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class ArtifactRef:
    sha256: str
    size: int
    format: str


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    version: str
    variant_id: str | None
    variant: str | None


@dataclass(frozen=True)
class Manifest:
    """A parsed artifact manifest. ``artifact`` None orders the agent to run no model."""

    version: int
    created: datetime
    expires: datetime
    artifact: ArtifactRef | None
    model: ModelInfo | None
    io: IoSignature | None
    signed: dict[str, Any] = field(compare=False, repr=False)  # as signed, for the store


def parse_manifest(signed: Mapping[str, Any]) -> Manifest:
    """Check every field of a manifest's ``signed`` object; ``malformed`` names the first bad one.

    With ``artifact`` null, ``model`` and ``io`` are not read: the order is "run nothing".
    """
    if signed.get("_type") != MANIFEST_TYPE:
        raise _malformed("_type", f"must be {MANIFEST_TYPE!r}, got {signed.get('_type')!r}")
    version = signed.get("version")
    if not _is_int(version) or version < 0:
        raise _malformed("version", f"must be a non-negative integer, got {version!r}")
    created = _timestamp(signed, "created", "manifest")
    expires = _timestamp(signed, "expires", "manifest")
    artifact = _artifact(signed.get("artifact"))
    model = _model_info(signed.get("model")) if artifact else None
    io = _io_signature(signed.get("io")) if artifact else None
    return Manifest(version, created, expires, artifact, model, io, copy.deepcopy(dict(signed)))


def verify_manifest(doc: Any, trust: TrustStore | Mapping[str, bytes]) -> Manifest:
    """Signature, then fields: ``unsigned``, ``bad_signature`` or ``malformed``."""
    keys = trust.keys if isinstance(trust, TrustStore) else trust
    return parse_manifest(verify_document(doc, keys))


def check_freshness(
    manifest: Manifest, now: datetime, highest_accepted_version: int | None
) -> None:
    """``expired`` past its expiry; ``rollback`` below the highest version accepted so far."""
    if manifest.expires < now:
        expired_at = _iso(manifest.expires)
        raise ManifestRefused(
            Reason.EXPIRED, f"manifest version {manifest.version} expired at {expired_at}"
        )
    if highest_accepted_version is not None and manifest.version < highest_accepted_version:
        raise ManifestRefused(
            Reason.ROLLBACK,
            f"manifest version {manifest.version} is lower than version "
            f"{highest_accepted_version}, already accepted",
        )


def check_manifest(
    doc: Any,
    trust: TrustStore | Mapping[str, bytes],
    now: datetime,
    highest_accepted_version: int | None,
) -> Manifest:
    """Every check of the contract's table that needs no download, in the table's order."""
    manifest = verify_manifest(doc, trust)
    check_freshness(manifest, now, highest_accepted_version)
    return manifest


def peek_version(doc: Any) -> int | None:
    """The version a document claims, unverified: only for labelling a refusal report."""
    signed = doc.get("signed") if isinstance(doc, Mapping) else None
    version = signed.get("version") if isinstance(signed, Mapping) else None
    return version if _is_int(version) and version >= 0 else None


def _malformed(field_name: str, problem: str) -> ManifestRefused:
    return ManifestRefused(Reason.MALFORMED, f"manifest field {field_name}: {problem}")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _timestamp(signed: Mapping[str, Any], name: str, what: str) -> datetime:
    value = signed.get(name)
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ManifestRefused(
            Reason.MALFORMED,
            f"{what} field {name}: expected an ISO 8601 time with a zone, got {value!r}",
        )
    return moment


def _artifact(value: Any) -> ArtifactRef | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _malformed("artifact", "must be an object or null")
    sha256, size, fmt = value.get("sha256"), value.get("size"), value.get("format")
    if not isinstance(sha256, str) or not _SHA256_HEX.match(sha256):
        raise _malformed("artifact.sha256", "must be 64 lowercase hex digits")
    if not _is_int(size) or size < 0:
        raise _malformed("artifact.size", f"must be a non-negative integer, got {size!r}")
    if fmt not in ARTIFACT_FORMATS:
        raise _malformed("artifact.format", f"must be one of {list(ARTIFACT_FORMATS)}, got {fmt!r}")
    return ArtifactRef(sha256, size, fmt)


def _model_info(value: Any) -> ModelInfo:
    if not isinstance(value, Mapping):
        raise _malformed("model", "must be an object when artifact is given")
    for name in ("id", "name", "version"):
        if not isinstance(value.get(name), str):
            raise _malformed(f"model.{name}", "must be a string")
    for name in ("variant_id", "variant"):
        if value.get(name) is not None and not isinstance(value.get(name), str):
            raise _malformed(f"model.{name}", "must be a string or null")
    return ModelInfo(
        id=value["id"],
        name=value["name"],
        version=value["version"],
        variant_id=value.get("variant_id"),
        variant=value.get("variant"),
    )


def _io_signature(value: Any) -> IoSignature:
    if not isinstance(value, Mapping):
        raise _malformed("io", "must be an object when artifact is given")
    return IoSignature(
        inputs=_tensor_specs(value.get("inputs"), "io.inputs"),
        outputs=_tensor_specs(value.get("outputs"), "io.outputs"),
    )


def _tensor_specs(value: Any, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list) or not value:
        raise _malformed(where, "must be a non-empty list")
    return tuple(_tensor_spec(item, f"{where}[{index}]") for index, item in enumerate(value))


def _tensor_spec(value: Any, where: str) -> TensorSpec:
    if not isinstance(value, Mapping):
        raise _malformed(where, "must be an object")
    name, shape, dtype = value.get("name"), value.get("shape"), value.get("dtype")
    if not isinstance(name, str) or not name:
        raise _malformed(f"{where}.name", "must be a non-empty string")
    if not isinstance(shape, list) or not all(_is_axis(axis) for axis in shape):
        raise _malformed(f"{where}.shape", "must be a list of non-negative integers or nulls")
    if dtype not in IO_DTYPES:
        raise _malformed(f"{where}.dtype", f"must be one of {list(IO_DTYPES)}, got {dtype!r}")
    return TensorSpec(name, tuple(shape), dtype)


def _is_axis(axis: Any) -> bool:
    return axis is None or (_is_int(axis) and axis >= 0)


def _signed_by(entries: Sequence[Any]) -> list[str]:
    return [str(item.get("key_id")) for item in entries if isinstance(item, Mapping)]
